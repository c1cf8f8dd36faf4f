//! Every committed fuzz input (the seed corpora in `libfuzzer/corpus/<target>/`, and crashes
//! once minimised and fixed in `libfuzzer/regressions/<target>/`) replayed through its target's
//! entry point in the normal test suite. `CANON_FUZZ_SEEDS=write` rewrites the seed corpora
//! from `seed_inputs`.

use std::path::Path;

#[test]
fn every_committed_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("libfuzzer");
    if std::env::var("CANON_FUZZ_SEEDS").as_deref() == Ok("write") {
        for (target, name, bytes) in canon_fuzz::seed_inputs() {
            let dir = root.join("corpus").join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut replayed = 0;
    for (target, run) in canon_fuzz::TARGETS {
        for kind in ["corpus", "regressions"] {
            let Ok(files) = std::fs::read_dir(root.join(kind).join(target)) else {
                continue;
            };
            for f in files {
                let path = f.unwrap().path();
                run(&std::fs::read(&path).unwrap());
                replayed += 1;
            }
        }
    }
    // Every target has seeds committed.
    let seeded: std::collections::BTreeSet<&str> = canon_fuzz::seed_inputs()
        .iter()
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(seeded.len(), canon_fuzz::TARGETS.len());
    assert!(
        replayed >= canon_fuzz::seed_inputs().len(),
        "replayed {replayed}"
    );
}

#[test]
fn seed_inputs_reach_past_the_decoders() {
    for (target, name, bytes) in canon_fuzz::seed_inputs() {
        match target {
            "codec_decode" => assert!(canon_fuzz::decode_all(&bytes) >= 1, "{name}"),
            "config" => assert!(canon_fuzz::config(&bytes), "{name} validates"),
            "p2p_channel" => assert_eq!(canon_fuzz::p2p_channel(&bytes), 2, "{name}: two frames"),
            "rpc_params" => assert!(canon_fuzz::rpc_params(&bytes), "{name} parses"),
            "settlement_events" => assert!(canon_fuzz::settlement_events(&bytes), "{name} decodes"),
            _ => {}
        }
    }
}

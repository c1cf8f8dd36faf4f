use std::process::Command;

#[test]
fn id_derives_the_seed_enode() {
    let out = Command::new(env!("CARGO_BIN_EXE_canon-node"))
        .args([
            "id",
            "--secret-key",
            "0af6153646bbf600f55ce455e1995283542b1ae25ce2622ce1fda443927c5308",
        ])
        .env_remove("NETWORK_SECRET_KEY")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("enode://246e07030b4c48b8f28ab1fdf797a02308b0ca724696b695aabee48ea48298ff221144a0c0f14ebf030aea6d5fb6b31bd3a02676204bb13e78336bb824e32f1d@127.0.0.1:3060"), "{stdout}");
}

#[test]
fn bad_key_names_the_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_canon-node"))
        .args(["id", "--secret-key", "0xnothex"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("network_secret_key"));
}

#[test]
fn check_config_names_the_bad_key_and_exits_non_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_canon-node"))
        .args(["check-config"])
        .env("CONSENSUS_PEER_IDS__JSON", "[\"0x1234\"]")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("consensus_peer_ids"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_canon-node"))
        .args(["check-config"])
        .env("NETWORK_PORT", "3999")
        .env_remove("NETWORK_SECRET_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("network_port: 3999") && stdout.contains("<redacted>"),
        "{stdout}"
    );
}

#[test]
fn check_config_reads_prefs_and_hides_the_validator_key() {
    let dir = tempfile::Builder::new()
        .prefix("canon-cli-prefs-")
        .tempdir()
        .unwrap();
    let prefs = dir.path().join("prefs.toml");
    std::fs::write(&prefs, "[Preferences]\nRedundancyLevel = 2\n").unwrap();
    let key = "7e5bb4b5d9e2c2a0d3ff7b8a47fa8e8b8f0b3e1b1c1d1e1f2021222324252627";
    let out = Command::new(env!("CARGO_BIN_EXE_canon-node"))
        .args(["check-config", "--prefs"])
        .arg(&prefs)
        .env("CONSENSUS_ENABLED", "false")
        .env("VALIDATOR_SECRET_KEY", key)
        .env_remove("REDUNDANCY_LEVEL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("redundancy_level: 2"), "{stdout}");
    assert!(
        !stdout.contains(key),
        "the validator key must not be printed: {stdout}"
    );
}

/// The production binary never links the simulator, and the simulator never links RocksDB.
#[test]
fn production_and_simulator_dependency_trees_stay_apart() {
    let tree = |args: &[&str]| {
        let out = Command::new(env!("CARGO"))
            .args(["tree", "-e", "normal", "--prefix", "none"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree");
        assert!(
            out.status.success(),
            "cargo tree {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let node = tree(&["-p", "canon-node", "--features", "production"]);
    assert!(
        node.contains("rocksdb"),
        "the production node links RocksDB"
    );
    assert!(!node.contains("madsim"), "the production node links madsim");
    let sim = tree(&["-p", "canon-sim"]);
    assert!(sim.contains("madsim"));
    assert!(!sim.contains("rocksdb"), "the simulator links RocksDB");
}

#[test]
fn check_config_names_bad_batcher_settings_and_hides_the_l1_key() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_canon-node"));
        cmd.arg("check-config");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    for (key, value, named) in [
        ("L1_SETTLEMENT_ADDRESS", "0x1234", "l1_settlement_address"),
        ("BATCHER_L1_SECRET_KEY", "zz", "batcher_l1_secret_key"),
        ("BATCHER_BLOCKS_PER_BATCH", "0", "batcher_blocks_per_batch"),
    ] {
        let out = run(&[(key, value)]);
        assert_eq!(out.status.code(), Some(2), "{key}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{key}={value}: {err}");
    }
    let l1_key = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let out = run(&[
        (
            "L1_SETTLEMENT_ADDRESS",
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        ),
        ("BATCHER_L1_SECRET_KEY", l1_key),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(l1_key), "{stdout}");
    assert!(
        stdout.contains("l1_settlement_address: '0x5FbDB2315678afecb367f032d93F642f64180aa3'")
            || stdout.contains("l1_settlement_address: 0x5FbDB2315678afecb367f032d93F642f64180aa3"),
        "{stdout}"
    );
}

#[test]
fn help_never_shows_a_key_from_the_environment() {
    let key = "c2c8042b03801e2e14b395ed24f970ead7646a9ff315b54f747bcefdb99afda7";
    for args in [vec!["id", "--help"], vec!["l1", "deploy", "--help"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_canon-node"))
            .args(&args)
            .env("NETWORK_SECRET_KEY", key)
            .env("L1_DEPLOYER_KEY", key)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(
            !text.contains(&key[..12]),
            "{args:?} shows the key:\n{text}"
        );
    }
}

#[test]
fn settings_prints_every_setting_with_its_environment_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_canon-node"))
        .arg("settings")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for row in [
        "| `network_enabled` | `NETWORK_ENABLED` |",
        "| `prover_api_enabled` | `PROVER_API_ENABLED` |",
        "| `redundancy_max_missed_rounds` | `REDUNDANCY_MAX_MISSED_ROUNDS` |",
        "| `observability_prometheus_address` | `OBSERVABILITY_PROMETHEUS_ADDRESS` | `127.0.0.1` |",
    ] {
        assert!(text.contains(row), "missing {row:?} in\n{text}");
    }
}

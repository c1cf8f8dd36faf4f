//! The timeline page as a person sees it: rendered by headless Chromium (Debian's `chromium`,
//! which the README's test command installs), its script run, and what it drew read back
//! from the page's DOM.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Chromium's program, or `None` (the test then says it was skipped and why).
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CANON_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
}

/// The page's DOM after its scripts ran.
fn dump_dom(chromium: &Path, page: &Path) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1500,900",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_timeline_of_a_planted_stall_shows_lanes_and_the_violation() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "skipped: no chromium on PATH (the README's test command installs Debian's \
             chromium; CANON_CHROMIUM=<program> names another)"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("canon-timeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let page = dir.join("chaos-1.html");
    // The planted bug leaves a snapshot's gap open: the run fails at the heal.
    let out = Command::new(env!("CARGO_BIN_EXE_canon-sim"))
        .args(["run", "chaos", "--seed", "1", "--html"])
        .arg(&page)
        .env("CANON_SIM_PLANT", "forget-gap")
        .env_remove("CANON_SIM_TRACE")
        .output()
        .expect("run canon-sim");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("timeline: "), "{stderr}");
    let dom = dump_dom(&chromium, &page);
    // The page's own script ran to its end, and nothing threw.
    assert!(
        dom.contains("<body data-ready=\"1\""),
        "script did not finish"
    );
    assert!(!dom.contains("data-error"), "the script threw: {dom}");
    // A lane for the overview, the cluster's faults, each node, the external node and L1.
    assert!(dom.contains("data-lanes=\"7\""), "lanes");
    for lane in [
        "canonical height",
        "network, disks",
        ">n0<",
        ">n1<",
        ">n2<",
        "x0 (external)",
        "L1 batches",
    ] {
        assert!(dom.contains(lane), "no lane {lane}");
    }
    // The violation is marked, the faults drawn, the nodes' chains and roles too.
    assert!(dom.contains("id=\"violation\""), "no violation mark");
    assert!(dom.contains("a snapshot's gap is still open"));
    assert!(dom.contains("class=\"item item-crash\""), "no crash drawn");
    assert!(
        dom.contains("class=\"item item-snapshot\""),
        "no snapshot drawn"
    );
    assert!(dom.contains("class=\"height\""), "no chain height drawn");
    assert!(
        dom.contains("class=\"band\""),
        "no bands (down, leading, faults)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A redundancy group's timeline has a lane per member and the rounds lane, one colour per
/// member; in the unfenced partition both sides sign, and the rounds both signed are marked.
#[test]
fn the_timeline_of_a_partitioned_group_marks_rounds_signed_twice() {
    let Some(chromium) = chromium() else {
        eprintln!("skipped: no chromium on PATH (see the test above)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("canon-timeline-group-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let page = dir.join("redundancy-partition-1.html");
    let out = Command::new(env!("CARGO_BIN_EXE_canon-sim"))
        .args(["run", "redundancy-partition", "--seed", "1", "--html"])
        .arg(&page)
        .env_remove("CANON_SIM_PLANT")
        .env_remove("CANON_SIM_TRACE")
        .output()
        .expect("run canon-sim");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let dom = dump_dom(&chromium, &page);
    assert!(!dom.contains("data-error"), "the script threw: {dom}");
    for lane in ["m0 (member)", "m1 (member)", "rounds: who signed"] {
        assert!(dom.contains(lane), "no lane {lane}");
    }
    assert!(dom.contains("class=\"item item-signed\""), "no round drawn");
    // Before the partition m0 signs; cut off, m0 and level 1 both sign some rounds.
    assert!(
        dom.contains(": m0 (level 0) signed height"),
        "m0 signed nothing"
    );
    assert!(
        dom.contains(" signed by m0 and m") || dom.contains(" signed by m1 and m0"),
        "no round marked as signed twice"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

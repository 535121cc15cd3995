//! `bmsfw campaign`, run as a person runs it: the built binary from another folder, its
//! output piped. A fixed slice of seed 1 keeps every promise (no violation, every
//! scenario reported, the table by fault class), and one scenario replays alone by its
//! number with the same outcome.

use std::process::Command;

fn campaign(args: &[&str]) -> (bool, String) {
    let folder = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bmsfw"))
        .current_dir(folder.path())
        .arg("campaign")
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Scenarios of the slice CI runs on every push.
const SLICE: &str = "60";

#[test]
fn a_slice_of_the_campaign_keeps_every_promise() {
    let (ok, text) = campaign(&["--seed", "1", "--scenarios", SLICE, "--jobs", "2"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("campaign of seed 1: {SLICE} scenarios")),
        "{text}"
    );
    assert!(text.contains("violations: 0"), "{text}");
    for class in [
        "no fault",
        "power cut",
        "plugin crash",
        "bus-off",
        "frame loss",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(class)),
            "no row for {class}:\n{text}"
        );
    }
    for vendor in ["aurora", "boreal", "coral"] {
        assert!(text.contains(&format!("vendor {vendor}")), "{text}");
    }
}

#[test]
fn one_scenario_replays_alone_by_its_number() {
    let (ok, first) = campaign(&["--seed", "1", "--scenario", "3"]);
    assert!(ok, "{first}");
    let (_, again) = campaign(&["--seed", "1", "--scenario", "3"]);
    let head = |t: &str| t.lines().next().unwrap_or_default().to_owned();
    assert!(
        head(&first).starts_with("scenario 3 of seed 1: "),
        "{first}"
    );
    assert_eq!(head(&first), head(&again));
    let end = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("ended: "))
            .map(|l| l.split(" (").next().unwrap_or_default().to_owned())
    };
    assert_eq!(end(&first), end(&again), "{first}\n{again}");
}

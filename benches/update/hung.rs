//! Part 3: a hung plugin call is detected within its deadline plus 50 ms.
//!
//! The "misbehave" fixture plugin (`tests/fixtures/plugins/misbehave`), hosted with the
//! loader's default deadlines, starts a session on a package whose trigger makes it spin
//! forever at the first `poll_transmit`. The engine's first round trip asking for frames
//! hangs; the time from that call's start to the session reporting the failure (code
//! 747, the deadline named) is measured against the configured deadline of a session
//! call. The round trips run on a worker of a multi-thread runtime, as in the daemon.
//! Restart pauses and quarantine are off, so that every trial gets a fresh host.

use bmsfw_core::plugin::host::{FilePackage, SessionStart};
use bmsfw_core::plugin::{Allowlist, HostSettings, Isolation, PluginLoader, Sha256Digest};
use bmsfw_plugin_api::{BatteryIdentity, SessionOptions, Timestamp};
use bmsfw_test_fixtures::{
    Approval, MISBEHAVE_MANUFACTURER, MISBEHAVE_PRODUCT, MISBEHAVE_VENDOR_ID, misbehave_package,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Hung sessions measured.
const TRIALS: usize = 7;
/// The goal: detected at most this long after the deadline.
const GOAL: Duration = Duration::from_millis(50);

/// What the trials found.
pub struct Hung {
    /// The deadline of a session call.
    pub deadline: Duration,
    /// Each trial's time from the hung call's start to the failure reported.
    pub detected: Vec<Duration>,
}

fn allowlist(library: &Path) -> Allowlist {
    let sha256 = Sha256Digest::of(&std::fs::read(library).unwrap()).to_string();
    let file = library.file_name().unwrap().to_string_lossy();
    let text = Approval {
        vendor_id: MISBEHAVE_VENDOR_ID,
        file: &file,
        sha256: &sha256,
        versions: "*",
        firmware: ("1.0", "9.9"),
        manufacturer: MISBEHAVE_MANUFACTURER,
        product_codes: &[MISBEHAVE_PRODUCT],
    }
    .to_toml();
    Allowlist::parse(Path::new("allowlist.toml"), &text).unwrap()
}

/// Runs the trials; `None` when the fixture is missing.
pub fn measure() -> Option<Hung> {
    let library = match std::panic::catch_unwind(|| bmsfw_test_fixtures::library("misbehave")) {
        Ok(library) => library,
        Err(_) => {
            println!("\n== hung plugin call: the misbehave fixture plugin is missing, skipped");
            return None;
        }
    };
    let settings = HostSettings {
        quarantine_after: u32::MAX,
        backoff_first: Duration::ZERO,
        backoff_max: Duration::ZERO,
        ..HostSettings::default()
    };
    let deadline = settings.deadlines.session;
    let plugin = PluginLoader::new(allowlist(&library))
        .with_isolation(Isolation::Hosted(Arc::new(settings)))
        .load_file(&library)
        .unwrap_or_else(|r| panic!("{r}"))
        .plugin;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hang.spkg");
    std::fs::write(
        &path,
        misbehave_package("hang", "poll_transmit", 1, 1, 4096),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (detected, message) = rt.block_on(async move {
        tokio::spawn(async move {
            let mut detected = Vec::new();
            let mut message = String::new();
            for _ in 0..TRIALS {
                let mut session = plugin
                    .start_session(SessionStart {
                        battery: BatteryIdentity::new(MISBEHAVE_MANUFACTURER)
                            .with_product_code(MISBEHAVE_PRODUCT),
                        package: Arc::new(FilePackage::open(&path).unwrap()),
                        options: SessionOptions::default(),
                        resume: None,
                    })
                    .unwrap_or_else(|f| panic!("{f}"));
                let mut frames = Vec::new();
                let start = Instant::now();
                session.poll_transmit_batch(Timestamp::from_micros(1_000), 16, &mut frames);
                let report = session.status();
                let took = start.elapsed();
                let Some(failure) = report.failure.clone() else {
                    panic!("the hung session did not fail: {report:?}");
                };
                assert!(frames.is_empty());
                assert_eq!(failure.code.0, 747, "{}", failure.message);
                detected.push(took);
                message = failure.message.to_string();
            }
            (detected, message)
        })
        .await
        .unwrap()
    });
    let worst = detected.iter().max().copied().unwrap_or_default();
    println!("\n== hung plugin call: the misbehave plugin spins in poll_transmit, hosted");
    println!(
        "time from the hung call's start to the session reporting failure, {TRIALS} trials: \
         {} ms; deadline {} ms; worst excess {:.1} ms (goal: at most {} ms)",
        detected
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", "),
        deadline.as_millis(),
        excess_ms(worst, deadline),
        GOAL.as_millis(),
    );
    println!("the session's failure: {message}");
    Some(Hung { deadline, detected })
}

fn excess_ms(took: Duration, deadline: Duration) -> f64 {
    (took.as_secs_f64() - deadline.as_secs_f64()) * 1e3
}

/// The summary line.
pub fn summary(hung: &Option<Hung>) {
    let Some(h) = hung else {
        println!("\n== summary: hung plugin call not measured (the misbehave fixture is missing)");
        return;
    };
    let worst = h.detected.iter().max().copied().unwrap_or_default();
    let mut sorted = h.detected.clone();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    println!(
        "\n== summary: hung plugin call detected {:.1} ms (median) / {:.1} ms (worst) after its \
         {} ms deadline (goal: at most {} ms): goal {}",
        excess_ms(median, h.deadline),
        excess_ms(worst, h.deadline),
        h.deadline.as_millis(),
        GOAL.as_millis(),
        if worst <= h.deadline + GOAL {
            "met"
        } else {
            "MISSED"
        }
    );
}

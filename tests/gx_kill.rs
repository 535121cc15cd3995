//! The real `bmsfw gx` killed with SIGKILL at its durable writes, mid-update, then started
//! again on the same files, as after a power cut of the GX.
//!
//! The battery is simulated in this test process and served to the daemon over a socket
//! (`bmsfw gx --site-socket`), so it outlives the daemon: where the kill leaves it (in its
//! bootloader, half written) is where the restarted daemon finds it. The crash points are
//! compiled in by the `failpoints` feature (test builds only): `FAILPOINTS` names the
//! point and the hit at which the daemon kills itself.
//!
//! After each kill and restart:
//! - the job ends: completed, or failed cleanly with 740, within its bound;
//! - the portal hears the GX's last reply of the job (`caught_up`) and no state twice in a
//!   row;
//! - the battery runs a complete firmware, the old one or the new one, never a mix;
//! - the restarted daemon sets nothing aside as corrupt;
//! - the next update completes.

mod gx_site;
mod support;

use bmsfw_sim::bridge::BridgeServer;
use bmsfw_sim::registry::BmsRegistry;
use bmsfw_sim::site::{RunningSite, SiteDescription};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::daemon::{Approved, DaemonSetup, Daemons, battery};

const SERIAL: &str = "AUR10-000913";
/// How long a daemon may take to start, an update to end, a restart to settle.
const WAIT: Duration = Duration::from_secs(90);

const SITE: &str = r#"
[[bus]]
name = "sim2"
bitrate = 500000

[[bus.battery]]
name = "shed"
vendor = "aurora"
manufacturer = "AURORA"
bms_name = "PowerCore 10"
product_code = 0xA520
firmware = [0x04, 0x0F]
capacity_ah = 200
serial = "AUR10-000913"
soc = 81
temperature_c = 21.0
"#;

/// The site, run here and served in `dir`.
struct ServedSite {
    site: RunningSite,
    _servers: Vec<BridgeServer>,
    dir: tempfile::TempDir,
}

fn serve_site() -> ServedSite {
    let mut registry = BmsRegistry::new();
    aurora_sim::register(&mut registry);
    let site = SiteDescription::parse(SITE, "the kill test's site")
        .unwrap()
        .start_with(&registry)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let servers = site
        .buses()
        .iter()
        .map(|bus| {
            BridgeServer::serve(
                bus.clone(),
                &dir.path().join(format!("{}.sock", bus.name())),
                "gx",
            )
            .unwrap()
        })
        .collect();
    ServedSite {
        site,
        _servers: servers,
        dir,
    }
}

impl ServedSite {
    fn aurora(&self) -> aurora_sim::AuroraHandle {
        let h = self.site.batteries()[0]
            .vendor_controls::<aurora_sim::AuroraHandle>()
            .expect("an Aurora battery");
        (*h).clone()
    }

    /// The version of the whole, verified package the battery would boot (`None` when
    /// the active slot holds no such package), and whether it runs it now.
    fn truth(&self) -> (Option<[u8; 2]>, bool) {
        let h = self.aurora();
        let status = h.status();
        let active = h.slot_package(status.active_slot);
        let version = aurora_sim::package::verify(&active)
            .ok()
            .map(|p| p.version)
            .filter(|v| *v == status.running_version);
        (version, matches!(status.stage, aurora_sim::Stage::Running))
    }
}

fn setup(site: &ServedSite) -> DaemonSetup {
    DaemonSetup {
        plugins: vec![Approved {
            library: gx_site::aurora_library(),
            file: None,
            vendor_id: gx_site::VENDOR_ID.into(),
            firmware: ("2.0".into(), "9.99".into()),
            manufacturer: "AURORA".into(),
            product_codes: vec![0xA520],
        }],
        site: SITE.into(),
        cans: vec!["sim2".into()],
        gx_extra: String::new(),
        site_socket: Some(site.dir.path().to_path_buf()),
    }
}

/// The battery's latest update, once the portal shows one after `previous` (a job
/// number, or null) ended and caught up.
async fn ended(d: &Daemons, previous: &Value) -> Value {
    d.until("the end of the update", WAIT, |s| {
        let u = &battery(s, SERIAL)?["latest_update"];
        (u["job"] != *previous && u["ended"] == true && u["caught_up"] == true).then(|| u.clone())
    })
    .await
}

/// Where a kill came, and what the restarted daemon made of it.
struct Outcome {
    killed: bool,
    state: String,
    code: Option<u64>,
    states_seen: String,
}

/// One kill at the `hit`-th pass of `point` (counted from the daemon's start) during an
/// update from `from` to `from + 1`, then the restart, the checks of the module's
/// promises, and the next update, to `from + 2`. The daemon is started afresh with the
/// crash point armed; the site, the broker and the portal keep running.
async fn kill_at(site: &ServedSite, d: &Daemons, point: &str, hit: u32, from: u8) -> Outcome {
    let points = format!("{point}={}*off->return", hit - 1);
    d.restart_gx_with(Some(&points));
    assert_eq!(site.truth(), (Some([4, from]), true));
    let target = from + 1;
    let package = gx_site::package([4, target], 48 * 1024, u64::from(hit));
    let previous_job = battery(&d.state().await, SERIAL)
        .map(|b| b["latest_update"]["job"].clone())
        .unwrap_or_default();
    let name = format!("powercore10-4.{target}.bin");

    // The supervisor of a GX (its init system) starts the daemon again once it died.
    let killed = AtomicBool::new(false);
    let supervisor = async {
        loop {
            if d.gx_exited() {
                killed.store(true, Ordering::SeqCst);
                d.restart_gx();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // The installer updates the battery, and asks again when the portal says the request
    // failed (only a kill may make it fail).
    let installer = async {
        let can_update = |s: &Value| (battery(s, SERIAL)?["can_update"] == true).then_some(());
        d.until("the battery", WAIT, can_update).await;
        if let Err(refused) = d.update(SERIAL, &name, package.clone(), false).await {
            // The portal may hear of the death (from the broker) before the supervisor's
            // next look.
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                killed.load(Ordering::SeqCst) || d.gx_exited(),
                "refused without a kill: {refused}\n{}",
                d.logs()
            );
            d.until("the battery", WAIT, can_update).await;
            d.update(SERIAL, &name, package.clone(), false)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
        }
        let u = ended(d, &previous_job).await;
        // Give a kill at the very end its chance.
        tokio::time::sleep(Duration::from_millis(500)).await;
        u
    };
    let u = tokio::select! {
        u = installer => u,
        () = supervisor => unreachable!("the supervisor never ends"),
    };
    if d.gx_exited() {
        killed.store(true, Ordering::SeqCst);
        d.restart_gx();
    }
    let killed = killed.load(Ordering::SeqCst);
    let state = u["state"].as_str().unwrap_or_default().to_owned();
    let code = u["error_code"].as_u64();
    match state.as_str() {
        "completed" => {}
        "failed" => assert_eq!(code, Some(740), "{u:#}\n{}", d.logs()),
        other => panic!("the job ended {other}: {u:#}\n{}", d.logs()),
    }
    let seen: Vec<String> = u["states_seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        seen.windows(2).all(|w| w[0] != w[1]),
        "a state twice in a row: {seen:?}"
    );
    // The battery runs a whole, verified firmware: the old one, or the new one (a kill
    // after the reset was sent); the new one when the job completed.
    let (version, running) = site.truth();
    assert!(running, "the battery is not running its firmware");
    match state.as_str() {
        "completed" => assert_eq!(version, Some([4, target])),
        _ => assert!(
            version == Some([4, from]) || version == Some([4, target]),
            "the battery would boot {version:?}"
        ),
    }
    let restarted = d.gx_log();
    assert!(
        !restarted.contains("corrupt"),
        "the restarted daemon set something aside:\n{restarted}"
    );

    // The next update completes.
    let first_job = u["job"].clone();
    let next = gx_site::package([4, target + 1], 48 * 1024, 99);
    d.update(
        SERIAL,
        &format!("powercore10-4.{}.bin", target + 1),
        next,
        true,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    let u2 = d
        .until("the end of the next update", WAIT, |s| {
            let u = &battery(s, SERIAL)?["latest_update"];
            (u["ended"] == true && u["caught_up"] == true && u["job"] != first_job)
                .then(|| u.clone())
        })
        .await;
    assert_eq!(u2["state"], "completed", "{u2:#}\n{}", d.logs());
    assert_eq!(
        u2["version_after"]["display"],
        format!("v4.{}", target + 1),
        "{u2:#}"
    );
    Outcome {
        killed,
        state,
        code,
        states_seen: seen.join(">"),
    }
}

/// The crash points of one update, each with the passes at which the daemon is killed:
/// every job record write (one per state the job enters), and the first passes of the
/// others.
const MATRIX: &[(&str, &[u32])] = &[
    ("journal.commit", &[1, 2, 3, 4, 5, 6, 7, 8, 9]),
    ("journal.committed", &[2, 6]),
    ("jobs.request", &[1]),
    ("events.append", &[1, 3]),
    ("events.appended", &[2, 5]),
    ("outbox.append", &[2, 5]),
    ("outbox.appended", &[3, 8]),
    ("staging.chunk", &[1, 3]),
    ("staging.chunk_recorded", &[2]),
    ("staging.stage", &[1]),
];

/// Rows this matrix shows to break a promise, not yet fixed, each with what breaks:
/// skipped, and printed.
const KNOWN_OPEN: &[(&str, &str)] = &[(
    "events.append=3",
    "the portal sends the update command again to the returned GX after the job it \
         started had ended (740); the GX, which forgets the commands of ended jobs, starts \
         a new job that waits for an upload nobody sends, and the next update is refused \
         (729)",
)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aurora_update_survives_a_kill_at_every_durable_write() {
    // BMSFW_KILL_CASE=point=hit[,point=hit...] runs those rows, to reproduce them.
    let only = std::env::var("BMSFW_KILL_CASE").ok();
    let site = serve_site();
    let d = Daemons::start(&setup(&site)).await;
    let mut from = 15;
    let mut rows = Vec::new();
    for (point, hits) in MATRIX {
        for hit in *hits {
            let row = format!("{point}={hit}");
            if only
                .as_ref()
                .is_some_and(|c| !c.split(',').any(|r| r == row))
            {
                continue;
            }
            if let Some((_, why)) = KNOWN_OPEN.iter().find(|(r, _)| *r == row) {
                eprintln!("{point:<24} {hit:>3}  skipped, known open: {why}");
                continue;
            }
            let o = kill_at(&site, &d, point, *hit, from).await;
            from += 2;
            let row = format!(
                "{point:<24} {hit:>3}  {:<7} {:<10} {:<5} {}",
                if o.killed { "killed" } else { "passed" },
                o.state,
                o.code.map(|c| c.to_string()).unwrap_or_default(),
                o.states_seen
            );
            eprintln!("{row}");
            rows.push((o.killed, row));
        }
    }
    // Every point was reached at least once in an update: a kill that never comes proves
    // nothing.
    for (point, _) in MATRIX.iter().filter(|_| only.is_none()) {
        // A point whose only rows are known open proves nothing yet.
        if KNOWN_OPEN
            .iter()
            .any(|(r, _)| r.starts_with(&format!("{point}=")))
        {
            continue;
        }
        assert!(
            rows.iter()
                .any(|(killed, row)| *killed && row.starts_with(point)),
            "no kill at {point}"
        );
    }
}

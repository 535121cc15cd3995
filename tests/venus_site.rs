//! The `venus` site source against the simulated Venus OS, through a real mosquitto, on the
//! Aurora site (real plugin, simulated BMS), in real time:
//!
//! - gates 720 (VRM access), 721 (GX firmware) and 728 (backup power) refuse with
//!   "unknown" when their Venus value is missing, stale or not understood, and with the
//!   value when it is bad; with every value good an update completes;
//! - a grid loss reported by Venus OS in the middle of an update aborts it with 728;
//! - VRM portal access changed from Full to read-only on the GX stops the running update
//!   with 720 and refuses the next, without a restart; back to Full, updates run again;
//! - the daemon's own status (`N/<portal id>/bmsfw/0/...`) counts the running update.

mod gx_site;
mod support;

use bmsfw_core::engine::Engine;
use bmsfw_core::gates::SiteStatus;
use bmsfw_core::job::JobState;
use bmsfw_core::venus::{VenusConfig, VenusHandle, VenusTargets, spawn_venus};
use bmsfw_core::vrm::{Eligibility, EngineRefusal, GxEngine, VrmAccess, VrmPortalMode};
use bmsfw_sim::venus::{self as sim, SimVenus};
use gx_site::{Site, job, package, request, upload, wait_end, wait_for_battery};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::Mosquitto;

const PORTAL: &str = "c0619ab00000";
/// The source's timing in these tests: re-read every 250 ms, stale after 2 s.
const REFRESH: Duration = Duration::from_millis(250);
const STALE: Duration = Duration::from_secs(2);

/// Mosquitto, the simulated Venus OS on it, and the Aurora site whose GX reads the site's
/// state from Venus.
struct World {
    broker: Mosquitto,
    venus: SimVenus,
    site: Site,
    engine: Arc<Engine>,
    source: Option<VenusHandle>,
}

impl World {
    async fn start() -> World {
        // Venus OS's own broker on the GX: plain MQTT on loopback.
        let broker = Mosquitto::start_plain();
        let addr = broker.addr();
        let venus = SimVenus::start(&addr.host, addr.port, PORTAL);
        tokio::time::timeout(Duration::from_secs(10), venus.connected())
            .await
            .expect("the simulated Venus OS connects");
        let mut site = Site::new([4, 15]);
        site.vrm = VrmAccess::unknown("not yet received from Venus OS");
        site.grid = SiteStatus::unknown("not yet received from Venus OS");
        // The configured firmware would pass 721: only the live value may count.
        site.gx_firmware = bmsfw_core::dotted_version::DottedVersion::from(vec![9, 99]);
        let engine = Arc::new(site.gx());
        let mut world = World {
            broker,
            venus,
            site,
            engine,
            source: None,
        };
        world.start_source();
        wait_for_battery(&world.engine).await;
        // Its whole identity heard (0x35E comes less often than the serial): the plugin
        // takes it.
        for _ in 0..200 {
            let views = world.engine.batteries().await;
            if views
                .iter()
                .any(|b| matches!(b.eligibility, Eligibility::Eligible { .. }))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        world.wait_all_known().await;
        world
    }

    fn config(&self) -> VenusConfig {
        let mut c = VenusConfig::new(self.broker.addr(), PORTAL);
        c.refresh = REFRESH;
        c.stale_after = STALE;
        c
    }

    /// A new `venus` source on the engine's handles (it starts knowing nothing).
    fn start_source(&mut self) {
        self.source = Some(spawn_venus(
            self.config(),
            VenusTargets {
                vrm: self.site.vrm.clone(),
                site: self.site.grid.clone(),
                engine: Some(Arc::clone(&self.engine) as Arc<dyn GxEngine>),
            },
        ));
    }

    async fn restart_source(&mut self) {
        if let Some(source) = self.source.take() {
            source.shutdown().await;
        }
        self.start_source();
    }

    fn known(&self) -> [bool; 3] {
        [
            self.site.vrm.reading().known().is_some(),
            self.site
                .grid
                .gx_firmware()
                .is_some_and(|f| f.known().is_some()),
            self.site.grid.grid().known().is_some(),
        ]
    }

    async fn wait_for(&self, what: &str, ok: impl Fn(&World) -> bool) {
        for _ in 0..200 {
            if ok(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{what}: VRM {}, firmware {:?}, grid {}",
            self.site.vrm.reading(),
            self.site.grid.gx_firmware(),
            self.site.grid.grid()
        );
    }

    async fn wait_all_known(&self) {
        self.wait_for("every value known", |w| w.known() == [true; 3])
            .await;
    }

    /// A request for a small update, refused.
    async fn refusal(&self) -> EngineRefusal {
        let pkg = package([4, 16], 4096, 3);
        match self.engine.request_update(request(&pkg)).await {
            Err(r) => r,
            Ok(status) => panic!("the request was accepted: job {}", status.job),
        }
    }
}

/// One site value: its path below `N/<portal id>/`, its good value, a bad (not understood)
/// value, its gate, and what the refusal says about the bad value.
struct Case {
    path: &'static str,
    good: Value,
    bad: Value,
    code: u32,
    bad_words: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_site_gate_refuses_a_missing_stale_or_bad_value_and_passes_a_good_one() {
    let mut w = World::start().await;
    let cases = [
        Case {
            path: sim::VRM_PORTAL,
            good: json!(2),
            bad: json!(7),
            code: 720,
            bad_words: "is 7, not 0 (off), 1 (read-only) or 2 (full)",
        },
        Case {
            path: sim::FIRMWARE,
            good: json!("v3.70"),
            bad: json!("banana"),
            code: 721,
            bad_words: "\"banana\" is not a Venus OS version",
        },
        Case {
            path: sim::AC_SOURCE,
            good: json!(1),
            bad: json!(99),
            code: 728,
            bad_words: "is 99, not 0 (not available), 1 (grid)",
        },
    ];
    for c in &cases {
        let topic = format!("N/{PORTAL}/{}", c.path);

        // Missing: a new source never receives it.
        w.venus.set(c.path, None);
        w.restart_source().await;
        w.wait_for("the other values known", |w| {
            w.known().iter().filter(|k| **k).count() == 2
        })
        .await;
        let r = w.refusal().await;
        assert_eq!(r.code, c.code, "{r}");
        assert!(
            r.message
                .contains(&format!("measured unknown (no value received on {topic})")),
            "{r}"
        );
        w.venus.set(c.path, Some(c.good.clone()));
        w.wait_all_known().await;

        // Not understood.
        w.venus.set(c.path, Some(c.bad.clone()));
        w.wait_for("the bad value seen", |w| w.known().contains(&false))
            .await;
        let r = w.refusal().await;
        assert_eq!(r.code, c.code, "{r}");
        assert!(r.message.contains("measured unknown ("), "{r}");
        assert!(r.message.contains(c.bad_words), "{r}");

        // Invalid (null).
        w.venus.set(c.path, Some(Value::Null));
        tokio::time::sleep(REFRESH * 2).await;
        if c.code == 728 {
            // No active input from the system: the inverter/charger decides (connected).
            assert!(w.known()[2], "{}", w.site.grid.grid());
        } else {
            let r = w.refusal().await;
            assert_eq!(r.code, c.code, "{r}");
            assert!(r.message.contains("invalid (null)"), "{r}");
        }
        w.venus.set(c.path, Some(c.good.clone()));
        w.wait_all_known().await;

        // Stale: Venus OS stops publishing and answering this value alone.
        w.venus.mute(c.path, true);
        tokio::time::sleep(STALE + REFRESH * 3).await;
        let r = w.refusal().await;
        assert_eq!(r.code, c.code, "{r}");
        assert!(
            r.message.contains(&format!("{topic} stale: last received")),
            "{r}"
        );
        assert!(r.message.contains("the limit is 2 s"), "{r}");
        w.venus.mute(c.path, false);
        w.wait_all_known().await;
    }

    // Bad but understood values refuse with the value itself.
    w.venus.set_vrm_portal(1);
    w.wait_for("read-only", |w| {
        w.site.vrm.reading().known() == Some(&VrmPortalMode::ReadOnly)
    })
    .await;
    let r = w.refusal().await;
    assert_eq!(r.code, 720, "{r}");
    assert!(r.message.contains("measured read-only, limit full"), "{r}");
    w.venus.set_vrm_portal(2);
    w.venus.set_firmware("v3.60~4");
    w.wait_for("the candidate", |w| {
        w.site
            .grid
            .gx_firmware()
            .is_some_and(|f| f.to_string() == "v3.60~4")
    })
    .await;
    let r = w.refusal().await;
    assert_eq!(r.code, 721, "{r}");
    assert!(
        r.message.contains("measured v3.60~4, limit v3.60 or later"),
        "{r}"
    );
    w.venus.set_firmware("v3.70");
    w.venus.grid_loss();
    w.wait_for("the grid lost", |w| {
        w.site.grid.grid()
            == bmsfw_core::gates::SiteValue::Known(bmsfw_core::gates::GridStatus::Lost)
    })
    .await;
    let r = w.refusal().await;
    assert_eq!(r.code, 728, "{r}");
    assert!(r.message.contains("measured grid lost"), "{r}");

    // Every value good: the update passes every gate and completes.
    w.venus.grid_restored();
    w.wait_for("all good", |w| {
        w.site.vrm.reading().known() == Some(&VrmPortalMode::Full)
            && w.site.grid.grid()
                == bmsfw_core::gates::SiteValue::Known(bmsfw_core::gates::GridStatus::Connected)
            && w.site
                .grid
                .gx_firmware()
                .is_some_and(|f| f.to_string() == "v3.70")
    })
    .await;
    let pkg = package([4, 16], 4096, 3);
    let id = upload(&w.engine, request(&pkg), &pkg)
        .await
        .expect("every gate passes");
    let record = wait_end(&w.engine, id, Duration::from_secs(60)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(w.site.status().running_version, [4, 16]);

    // The broker gone: every value is unknown at once.
    w.broker.kill();
    w.wait_for("everything unknown", |w| w.known() == [false; 3])
        .await;
    let r = w.refusal().await;
    assert_eq!(r.code, 720, "{r}");
    assert!(r.message.contains("MQTT broker at 127.0.0.1"), "{r}");
    assert!(r.message.contains("is not reachable"), "{r}");
}

/// Starts a 64 KiB update and returns once a fifth of it is on its way.
async fn update_under_way(w: &World) -> bmsfw_core::job::JobId {
    let pkg = package([4, 16], 64 * 1024, 5);
    let id = upload(&w.engine, request(&pkg), &pkg).await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = job(&w.engine, id).await;
        assert!(!r.state().is_terminal(), "{r:#?}");
        if r.percent().get() >= 20 {
            return id;
        }
    }
}

/// Subscribes to the daemon's status topics; returns a channel of (path, payload).
async fn watch_status(
    broker: &Mosquitto,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let addr = broker.addr();
    let mut options = MqttOptions::new("status-watcher", addr.host, addr.port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client
        .subscribe(format!("N/{PORTAL}/bmsfw/0/#"), QoS::AtMostOnce)
        .await
        .unwrap();
    // Ask for every value, as a Venus OS client would (after the subscription, on the
    // same connection, so the answers reach it).
    client
        .publish(format!("R/{PORTAL}/keepalive"), QoS::AtMostOnce, false, "")
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let path = p
                    .topic
                    .trim_start_matches(&format!("N/{PORTAL}/bmsfw/0/"))
                    .to_owned();
                if tx.send((path, p.payload.to_vec())).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

async fn next_value(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    path: &str,
    want: &Value,
) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let (p, payload) = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {path} = {want}"))
            .unwrap();
        if p == path
            && serde_json::from_slice::<Value>(&payload).ok() == Some(json!({ "value": want }))
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_loss_reported_by_venus_aborts_the_update_with_728() {
    let w = World::start().await;
    let mut status = watch_status(&w.broker).await;
    next_value(&mut status, "Connected", &json!(1)).await;
    next_value(&mut status, "ProductName", &json!("bmsfw")).await;
    let id = update_under_way(&w).await;
    next_value(&mut status, "Updates/Running", &json!(1)).await;

    w.venus.grid_loss();
    let record = wait_end(&w.engine, id, Duration::from_secs(30)).await;
    assert_eq!(record.state(), JobState::Failed, "{record:#?}");
    let failure = record.failure().unwrap();
    assert_eq!(failure.code, 728, "{failure:?}");
    assert!(failure.message.contains("grid lost"), "{}", failure.message);
    next_value(&mut status, "Updates/Running", &json!(0)).await;
    // The battery kept its firmware.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(w.site.status().running_version, [4, 15]);
    assert_eq!(w.site.status().boots, 0);

    // No update starts while the grid is lost; one runs once it is back.
    let r = w.refusal().await;
    assert_eq!(r.code, 728, "{r}");
    w.venus.grid_restored();
    w.wait_for("the grid back", |w| {
        w.site.grid.grid()
            == bmsfw_core::gates::SiteValue::Known(bmsfw_core::gates::GridStatus::Connected)
    })
    .await;
    let pkg = package([4, 16], 4096, 6);
    let id = upload(&w.engine, request(&pkg), &pkg).await.unwrap();
    let record = wait_end(&w.engine, id, Duration::from_secs(60)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vrm_portal_access_changed_to_read_only_takes_effect_without_a_restart() {
    let w = World::start().await;
    assert_eq!(w.site.vrm.get(), VrmPortalMode::Full);
    let id = update_under_way(&w).await;

    // The owner sets VRM portal access to read-only on the GX's menu.
    w.venus.set_vrm_portal(1);
    let record = wait_end(&w.engine, id, Duration::from_secs(30)).await;
    assert_eq!(record.state(), JobState::Failed, "{record:#?}");
    let failure = record.failure().unwrap();
    assert_eq!(failure.code, 720, "{failure:?}");
    assert!(
        failure.message.contains("measured read-only"),
        "{}",
        failure.message
    );
    // The VRM link sees it too: it refuses writes and commands from now on.
    assert_eq!(w.site.vrm.get(), VrmPortalMode::ReadOnly);
    let r = w.refusal().await;
    assert_eq!(r.code, 720, "{r}");

    // Back to Full: updates run again, same daemon.
    w.venus.set_vrm_portal(2);
    w.wait_for("full again", |w| w.site.vrm.get() == VrmPortalMode::Full)
        .await;
    let pkg = package([4, 16], 4096, 7);
    let id = upload(&w.engine, request(&pkg), &pkg).await.unwrap();
    let record = wait_end(&w.engine, id, Duration::from_secs(60)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
}

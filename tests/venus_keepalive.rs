//! Coexistence with Venus OS's own BMS-Can driver on the same interface: while another
//! node sends the GX keep-alive (0x305/0x307), the daemon's engine sends none of its own,
//! and nothing else either (monitoring only listens); when the other node stops, the
//! engine's keep-alive resumes. On the simulated bus, in virtual time.

use bmsfw_can::{CanEvent, CanInterface};
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineConfig};
use bmsfw_plugin_api::{CanFrame, CanId};
use bmsfw_sim::bus::SimBus;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The other node's keep-alive: byte 7 marks it so the listener tells the two apart (the
/// engine looks at the identifier only).
fn foreign(id: u16) -> CanFrame {
    CanFrame::new(CanId::standard(id).unwrap(), &[0, 0, 0, 0, 0, 0, 0, 0xEE]).unwrap()
}

#[tokio::test(start_paused = true)]
async fn our_keep_alive_pauses_while_another_node_sends_one_and_resumes_after() {
    let bus = SimBus::new("can0", 500_000);
    let gx_node = bus.attach("gx");
    let venus = bus.attach("venus-driver");
    let listener = bus.attach("listener");
    let state = tempfile::tempdir().unwrap();
    let engine = Engine::builder(EngineConfig::in_dir(
        state.path().join("state"),
        DottedVersion::from(vec![3, 70]),
    ))
    .bus(Arc::new(gx_node) as Arc<dyn CanInterface>)
    .start()
    .unwrap();
    let t0 = Instant::now();

    // Everything the listener hears: (seconds since t0, frame).
    let heard: Arc<Mutex<Vec<(f64, CanFrame)>>> = Arc::default();
    let sink = heard.clone();
    let listen = tokio::spawn(async move {
        while let Ok(event) = listener.recv().await {
            if let CanEvent::Frame(rx) = event {
                let at = rx.at.saturating_duration_since(t0).as_secs_f64();
                sink.lock().unwrap().push((at, rx.frame));
            }
        }
    });

    // The other node sends its pair every second from 5.5 s to 15.5 s.
    tokio::time::sleep_until(t0 + Duration::from_millis(5500)).await;
    for _ in 0..11 {
        venus.send(foreign(0x305)).await.unwrap();
        venus.send(foreign(0x307)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep_until(t0 + Duration::from_secs(25)).await;
    listen.abort();

    let heard = heard.lock().unwrap().clone();
    let ours = |from: f64, to: f64| -> Vec<f64> {
        heard
            .iter()
            .filter(|(at, f)| *at >= from && *at < to && f.id().raw() == 0x305 && f.data()[7] == 0)
            .map(|(at, _)| *at)
            .collect()
    };
    // Before: ours once a second.
    let before = ours(0.0, 5.5);
    assert!((5..=6).contains(&before.len()), "{before:?}");
    // While the other node sends (5.5 s to 15.5 s): nothing from the engine at all,
    // neither keep-alive nor anything else.
    let during: Vec<&(f64, CanFrame)> = heard
        .iter()
        .filter(|(at, f)| *at > 5.51 && *at < 15.5 && f.data().get(7) != Some(&0xEE))
        .collect();
    assert!(during.is_empty(), "the engine sent {during:?}");
    // After its last pair (15.5 s), ours resumes within three periods, once a second.
    let after = ours(15.5, 25.0);
    assert!(
        !after.is_empty() && after[0] <= 18.6,
        "ours did not resume: {after:?}"
    );
    assert!(after.len() >= 6, "{after:?}");
    for pair in after.windows(2) {
        let gap = pair[1] - pair[0];
        assert!((0.9..1.1).contains(&gap), "{after:?}");
    }
    // And ours always came as a pair: each 0x305 followed by its 0x307.
    let ids: Vec<u32> = heard
        .iter()
        .filter(|(_, f)| f.data()[7] == 0)
        .map(|(_, f)| f.id().raw())
        .collect();
    assert!(ids.chunks(2).all(|c| c == [0x305, 0x307]), "{ids:x?}");
    engine.shutdown().await;
}

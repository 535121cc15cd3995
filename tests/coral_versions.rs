//! Coral's build is part of its version: 0x35F shows only major and minor, the bundle and
//! the protocol carry the build. With the installer's default "newer only", a bundle that
//! changes only the build is newer than the build the master runs, and the same build is
//! not. Real plugin through the allowlist, simulated ReefStack, virtual time.

mod coral_site;

use bmsfw_core::job::JobState;
use bmsfw_sim::bus::SimBus;
use coral_site::*;
use std::time::Duration;

/// A pack of two whose master runs `master` (0x35F shows v1.10 for every build of it).
fn site(master: [u8; 3]) -> Site {
    let site = Site::with(
        SimBus::new("can0", 500_000),
        |c| {
            c.firmware = master;
            for m in &mut c.modules {
                m.firmware = MODULE_NEW;
            }
        },
        2,
    );
    assert_eq!(site.status().running_version, master);
    site
}

#[tokio::test(start_paused = true)]
async fn a_build_only_change_is_newer_and_installs_with_newer_only() {
    let site = site([1, 0x10, 0x03]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let bundle = bundle(32 * 1024, 8 * 1024, 11);
    let id = upload(&engine, request(&bundle), &bundle).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(200)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(record.version_before().unwrap().display, "v1.10");
    assert_eq!(record.version_after().unwrap().display, "v1.10 (build FF)");
    assert_eq!(site.status().running_version, NEW);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_same_build_is_refused_with_731_after_hello_alone() {
    let site = site(NEW);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let bundle = bundle(32 * 1024, 8 * 1024, 12);
    // 0x35F cannot tell: the request and the gates before the transfer let it through.
    let id = upload(&engine, request(&bundle), &bundle).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(60)).await;
    assert_eq!(record.state(), JobState::Failed, "{record:#?}");
    let failure = record.failure().unwrap();
    assert_eq!(failure.code, 731, "{failure:?}");
    assert!(
        failure
            .message
            .contains("the battery runs v1.10 (build FF) [0110FF]")
            && failure.message.contains("not newer")
            && failure.message.contains("allow a reinstall or downgrade"),
        "{}",
        failure.message
    );
    // Only HELLO went out: nothing was erased, not one byte of the bundle was sent.
    let frames = site.coral_frames_from_gx();
    assert!(!frames.is_empty());
    assert!(frames.iter().all(|f| data_sequence(f).is_none()));
    assert!(
        frames
            .iter()
            .all(|f| f.data()[0] == 0x01 || f.data()[0] == 0x08),
        "{frames:?}"
    );
    assert_eq!(site.status().running_version, NEW);
    engine.shutdown().await;
}

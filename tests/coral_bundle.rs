//! Spoiled Coral bundles through the whole GX: a bad signature, one image swapped for
//! another, a truncated file. Each is refused in stage 1 with its code, and not a single
//! frame of the update protocol reaches the bus; a good bundle afterwards goes through.

mod coral_site;

use bmsfw_core::job::JobState;
use bmsfw_core::vrm::GxEngine;
use coral_sim::bundle::{Corruption, corrupt, image_range};
use coral_site::*;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn spoiled_bundles_are_refused_before_a_single_frame_is_sent() {
    let site = Site::new(2);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let good = bundle(40 * 1024, 8 * 1024, 4);
    let module_image = image_range(&good, 1).unwrap();
    let cases = [
        (Corruption::BadSignature, 762, "signature does not verify"),
        (Corruption::SwapImage { entry: 1 }, 762, "image 1"),
        (
            Corruption::Truncate {
                len: good.len() - 100,
            },
            760,
            "truncated",
        ),
    ];
    for (corruption, code, words) in cases {
        let spoiled = corrupt(&good, corruption);
        let refusal = upload(&engine, request(&spoiled), &spoiled)
            .await
            .unwrap_err();
        assert_eq!(refusal.code, code, "{corruption:?}: {refusal}");
        assert!(refusal.message.contains(words), "{corruption:?}: {refusal}");
        if let Corruption::SwapImage { .. } = corruption {
            // The refusal names where the swapped image starts.
            assert!(
                refusal.message.contains(&module_image.start.to_string()),
                "{refusal}"
            );
        }
        // The job ended there.
        let jobs = engine.jobs().await;
        let last = jobs.iter().max_by_key(|j| j.id()).unwrap();
        assert_eq!(last.state(), JobState::Failed);
        assert_eq!(last.failure().unwrap().code, code);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        site.coral_frames_from_gx().is_empty(),
        "frames sent: {:?}",
        site.coral_frames_from_gx()
    );
    let status = site.status();
    assert_eq!(status.staged, None);
    assert_eq!(status.running_version, OLD);

    // The good bundle is accepted and installed.
    let id = upload(&engine, request(&good), &good).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(300)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert!(!site.coral_frames_from_gx().is_empty());
}

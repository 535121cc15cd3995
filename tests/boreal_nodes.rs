//! One node of a Boreal bank updated alone through a GX job: the installer's choice goes
//! from the request through the job record and its journal to the real plugin (loaded
//! through the allowlist), on the simulated bank, in virtual time.

mod boreal_common;

use bmsfw_core::events::EventKind;
use bmsfw_core::job::{JobState, ModuleState};
use bmsfw_core::vrm::{GxEngine, UpdateRequest, UpdateTargets};
use bmsfw_plugin_api::CanFrame;
use boreal_common::*;
use boreal_sim::flash::SlotId;
use std::time::Duration;

fn only(ids: &[u16], package: &[u8]) -> UpdateRequest {
    let mut r = request(package);
    r.options.targets = UpdateTargets::Only(ids.to_vec());
    r
}

/// An SDO request that writes (initiate download `0x2_`, block download `0xC_`, or a
/// segment of either) rather than reads (`0x40`).
fn writes(frame: &CanFrame) -> bool {
    frame.data()[0] != 0x40
}

#[tokio::test(start_paused = true)]
async fn node_2_alone_completes_while_node_1_and_the_bank_s_0x35f_keep_2_10() {
    // Both run 2.10; node 1 speaks for the bank, whose 0x35F shows its lowest version: it
    // cannot show node 2's 2.15, so waiting for it would be in vain.
    let site = Site::new(&[(1, OLD), (2, OLD)]);
    let listener = site.listener();
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let recording = {
        let epoch = site.epoch;
        tokio::spawn(async move { record(&listener, epoch, Duration::from_secs(100)).await })
    };
    let package = package(NEW, 40 * 1024, 21);
    let id = upload(&engine, only(&[2], &package), &package)
        .await
        .unwrap();
    assert_eq!(
        job(&engine, id).await.targets(),
        &UpdateTargets::Only(vec![2])
    );
    let record = wait_end(&engine, id, Duration::from_secs(90)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    // The battery as 0x35F shows it after the update: still the bank's lowest.
    assert_eq!(record.version_after().unwrap().display, "2.10");
    let modules: Vec<(u16, ModuleState, String)> = record
        .modules()
        .iter()
        .map(|m| {
            (
                m.index,
                m.state,
                m.version.as_ref().unwrap().display.clone(),
            )
        })
        .collect();
    assert_eq!(
        modules,
        vec![
            (1, ModuleState::Skipped, "2.10".to_owned()),
            (2, ModuleState::Done, "2.15".to_owned())
        ]
    );

    let nodes = site.nodes();
    assert_eq!(nodes[0].running_version, OLD);
    assert_eq!(nodes[0].active_slot, SlotId::A);
    assert_eq!((nodes[0].boots, nodes[0].inactive_len), (0, 0));
    assert_eq!(nodes[1].running_version, NEW);
    assert_eq!(nodes[1].boots, 1);

    // On the wire: node 1 was only read (0x601 carried reads alone), node 2 written.
    let frames = recording.await.unwrap();
    let to = |node: u32| {
        frames
            .iter()
            .filter(move |(_, f)| f.id().raw() == 0x600 + node)
    };
    assert!(to(1).count() > 0);
    assert!(to(1).all(|(_, f)| !writes(f)), "a write reached node 1");
    assert!(to(2).any(|(_, f)| writes(f)));

    // The event log says which node the installer chose and what became of each.
    let history = engine.history(SERIAL).await.unwrap();
    let mine: Vec<&EventKind> = history
        .iter()
        .filter(|e| e.job == id)
        .map(|e| &e.event)
        .collect();
    assert!(
        matches!(mine[0], EventKind::Initiated { targets, .. } if targets == &vec![2]),
        "{mine:?}"
    );
    assert!(mine[0].label().contains("of node/module 2 only"));
    assert!(mine.iter().any(|e| matches!(
        e,
        EventKind::Module { index: 2, state: ModuleState::Done, version: Some(v) }
            if v.display == "2.15"
    )));
    assert!(mine.iter().any(|e| matches!(
        e,
        EventKind::Module {
            index: 1,
            state: ModuleState::Skipped,
            ..
        }
    )));
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_node_the_bank_does_not_have_is_refused_before_any_frame() {
    let site = Site::new(&[(1, OLD), (2, OLD)]);
    let listener = site.listener();
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let recording = {
        let epoch = site.epoch;
        tokio::spawn(async move { record(&listener, epoch, Duration::from_secs(30)).await })
    };
    let package = package(NEW, 16 * 1024, 22);
    let id = upload(&engine, only(&[5], &package), &package)
        .await
        .unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(20)).await;
    assert_eq!(record.state(), JobState::Failed, "{record:#?}");
    let failure = record.failure().unwrap();
    assert_eq!(failure.code, 755, "{failure:?}");
    assert!(
        failure
            .message
            .contains("names node 5, which is not in the bank")
            && failure
                .message
                .contains("the bank's nodes are node 1, node 2"),
        "{}",
        failure.message
    );
    // Not one frame of the update protocol went out.
    let frames = recording.await.unwrap();
    assert!(
        !frames
            .iter()
            .any(|(_, f)| (0x601..=0x610).contains(&f.id().raw())),
        "an SDO request was sent"
    );
    for node in site.nodes() {
        assert_eq!((node.running_version, node.boots), (OLD, 0));
    }
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_choice_survives_a_gx_restart_in_the_journal() {
    let site = Site::new(&[(1, OLD), (2, OLD)]);
    let package = package(NEW, 32 * 1024, 23);
    let chunk = 16 * 1024;
    let id = {
        let engine = site.gx();
        wait_for_battery(&engine).await;
        let job = engine
            .request_update(only(&[2], &package))
            .await
            .unwrap()
            .job;
        // Half the package, then the GX restarts.
        engine
            .accept_chunk(job, 0, package[..chunk].to_vec())
            .await
            .unwrap();
        engine.shutdown().await;
        job
    };
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let resumed = job(&engine, id).await;
    assert_eq!(resumed.state(), JobState::Uploading);
    assert_eq!(resumed.targets(), &UpdateTargets::Only(vec![2]));
    let status = engine.resume_upload(id).await.unwrap();
    assert_eq!(status.first_missing, Some(1));
    for (i, bytes) in package.chunks(chunk).enumerate().skip(1) {
        engine
            .accept_chunk(id, i as u32, bytes.to_vec())
            .await
            .unwrap();
    }
    engine.finish_upload(id).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(90)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    let nodes = site.nodes();
    assert_eq!((nodes[0].running_version, nodes[0].boots), (OLD, 0));
    assert_eq!((nodes[1].running_version, nodes[1].boots), (NEW, 1));
    engine.shutdown().await;
}

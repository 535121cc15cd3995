//! End to end with the real Boreal plugin (loaded through the allowlist), the real engine
//! and the simulated Taiga bank, on the simulated bus in virtual time.

mod boreal_common;

use bmsfw_core::events::EventKind;
use bmsfw_core::job::JobState;
use bmsfw_core::plugin::{ModuleUpdateState, SessionPhase};
use bmsfw_core::vrm::GxEngine;
use bmsfw_plugin_api::SessionOptions;
use bmsfw_plugin_api::abi_stable::std_types::{ROption, RVec};
use boreal_common::*;
use boreal_sim::flash::SlotId;
use boreal_sim::node::NodeStage;
use boreal_sim::package::{Corruption, corrupt};
use std::time::Duration;

const STATES: [JobState; 5] = [
    JobState::Transferring,
    JobState::Installing,
    JobState::Restarting,
    JobState::Verifying,
    JobState::Completed,
];

#[tokio::test(start_paused = true)]
async fn a_successful_update_goes_through_every_state_with_both_versions_right() {
    let site = Site::new(&[(1, OLD)]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let package = package(NEW, 96 * 1024, 1);
    let id = upload(&engine, request(&package), &package).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(180)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    let before = record.version_before().unwrap();
    assert_eq!(
        (before.raw.as_slice(), before.display.as_str()),
        (&OLD[..], "2.10")
    );
    let after = record.version_after().unwrap();
    assert_eq!(
        (after.raw.as_slice(), after.display.as_str()),
        (&NEW[..], "2.15")
    );

    let node = &site.nodes()[0];
    assert_eq!(node.running_version, NEW);
    assert_eq!(node.active_slot, SlotId::B);
    assert_eq!(node.stage, NodeStage::Running);
    assert_eq!(site.bank.lowest_version(), NEW);

    let history = engine.history(SERIAL).await.unwrap();
    assert_eq!(states(&history, id), STATES.to_vec());
    assert!(history.iter().any(|e| matches!(
        &e.event,
        EventKind::Completed { version_before: Some(b), version_after }
            if b.raw == OLD && version_after.display == "2.15"
    )));
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn two_nodes_on_one_bus_are_updated_in_one_request_the_speaker_last() {
    let site = Site::new(&[(1, OLD), (2, OLD)]);
    let listener = site.listener();
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let package = package(NEW, 64 * 1024, 2);
    let recording = {
        let epoch = site.epoch;
        tokio::spawn(async move { record(&listener, epoch, Duration::from_secs(120)).await })
    };
    let id = upload(&engine, request(&package), &package).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(110)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(record.version_after().unwrap().display, "2.15");
    for node in site.nodes() {
        assert_eq!(node.running_version, NEW, "node {}", node.id);
        assert_eq!(node.boots, 1, "node {} restarted once", node.id);
    }
    let history = engine.history(SERIAL).await.unwrap();
    assert_eq!(states(&history, id), STATES.to_vec());

    // On the wire: node 2 was programmed and restarted (its boot-up message) before the
    // first request to node 1, the speaker; BMS-Can went on while node 2 restarted.
    let frames = recording.await.unwrap();
    let first = |pred: &dyn Fn(&bmsfw_plugin_api::CanFrame) -> bool| {
        frames
            .iter()
            .find(|(_, f)| pred(f))
            .map(|(t, _)| *t)
            .unwrap()
    };
    let node2_start = first(&|f| f.id().raw() == 0x602 && f.data()[..3] == [0x2F, 0x51, 0x1F]);
    let node2_boot = first(&|f| f.id().raw() == 0x702 && f.data() == [0x00]);
    let node1_first_write =
        first(&|f| f.id().raw() == 0x601 && f.data()[..3] == [0x2F, 0x51, 0x1F]);
    assert!(node2_start < node2_boot && node2_boot < node1_first_write);
    let telemetry_during_restart = frames
        .iter()
        .filter(|(t, f)| *t > node2_start && *t < node2_boot && f.id().raw() == 0x356)
        .count();
    assert!(telemetry_during_restart >= 8, "{telemetry_during_restart}");
    // The bank read 2.10 in 0x35F until its last node ran 2.15: after node 2 booted 2.15
    // and until node 1 was told to start.
    let node1_start =
        first(&|f| f.id().raw() == 0x601 && f.data()[..5] == [0x2F, 0x51, 0x1F, 0x01, 0x01]);
    let shown: Vec<[u8; 2]> = frames
        .iter()
        .filter(|(t, f)| f.id().raw() == 0x35F && *t > node2_boot && *t < node1_start)
        .map(|(_, f)| [f.data()[2], f.data()[3]])
        .collect();
    assert!(
        !shown.is_empty() && shown.iter().all(|v| *v == OLD),
        "{shown:?}"
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn one_node_of_the_bank_is_updated_alone_when_the_options_name_it() {
    // A replaced battery (node 3) runs older firmware than the rest of the bank.
    let site = Site::new(&[(1, NEW), (2, NEW), (3, OLD)]);
    let gx = site.bus.attach("gx");
    let plugin = plugin();
    let battery = listen(&gx, site.epoch, Duration::from_secs(2)).await;
    assert_eq!(
        battery.raw_35f(),
        &[0x10, 0xB2, 0x02, 0x10, 0x90, 0x01, 1, 3]
    );
    let options = SessionOptions {
        node_id: ROption::RSome(3),
        modules: RVec::new(),
    };
    let package = package(NEW, 32 * 1024, 3);
    let mut session = start_session(&plugin, &battery, site.dir.path(), &package, options);
    let (phases, last) = drive(&plugin, &gx, site.epoch, session.as_mut()).await;
    assert_eq!(last.phase, SessionPhase::Done, "{last:?}");
    assert_eq!(
        phases,
        vec![
            SessionPhase::Transferring,
            SessionPhase::Installing,
            SessionPhase::Restarting,
            SessionPhase::Verifying,
            SessionPhase::Done
        ]
    );
    // The whole bank was identified; the nodes not named are reported left alone.
    let modules: Vec<(u16, ModuleUpdateState)> =
        last.modules.iter().map(|m| (m.index, m.state)).collect();
    assert_eq!(
        modules,
        vec![
            (1, ModuleUpdateState::Skipped),
            (2, ModuleUpdateState::Skipped),
            (3, ModuleUpdateState::Done)
        ]
    );
    let nodes = site.nodes();
    assert!(nodes.iter().all(|n| n.running_version == NEW));
    // Only node 3 restarted.
    let boots: Vec<u32> = nodes.iter().map(|n| n.boots).collect();
    assert_eq!(boots, vec![0, 0, 1]);
    assert_eq!(site.bank.lowest_version(), NEW);
}

#[tokio::test(start_paused = true)]
async fn hex_files_with_overlaps_bad_checksums_or_stray_addresses_are_refused_with_their_line() {
    let site = Site::new(&[(1, OLD), (2, OLD)]);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let good = package(NEW, 20_000, 4);
    let cases = [
        (
            Corruption::OverlappingRecord { line: 40 },
            "overlapping records",
        ),
        (Corruption::BadChecksum { line: 123 }, "bad checksum"),
        (Corruption::OutOfRange { line: 7 }, "address out of range"),
        (
            Corruption::UnsupportedRecordType {
                line: 2,
                kind: 0x02,
            },
            "type 02",
        ),
        (
            Corruption::UnsupportedRecordType {
                line: 300,
                kind: 0x06,
            },
            "type 06",
        ),
        (Corruption::MissingEndOfFile, "missing end-of-file record"),
    ];
    for (corruption, words) in cases {
        let bad = corrupt(&good, corruption);
        let refusal = upload(&engine, request(&bad.bytes), &bad.bytes)
            .await
            .expect_err("a damaged file is refused");
        assert_eq!(refusal.code, 760, "{corruption:?}: {refusal:?}");
        assert!(
            refusal.message.contains(&format!("(at line {})", bad.line)),
            "{corruption:?}: {}",
            refusal.message
        );
        assert!(
            refusal.message.contains(words),
            "{corruption:?}: {}",
            refusal.message
        );
    }
    // Nothing reached the bank: no node was stopped or cleared.
    for node in site.nodes() {
        assert_eq!(node.program, boreal_sim::dictionary::ProgramState::Idle);
        assert_eq!(node.running_version, OLD);
    }
    // Every refused job failed with the same code, and the bank stays updatable.
    let jobs = engine.jobs().await;
    assert_eq!(jobs.len(), 6);
    assert!(jobs.iter().all(|j| j.state() == JobState::Failed));
    let id = upload(&engine, request(&good), &good).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(120)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_node_that_refuses_its_image_fails_the_job_naming_it_and_the_others() {
    let site = Site::new(&[(1, OLD), (2, OLD)]);
    // The speaker, updated last, keeps a damaged cell: its check finds the CRC wrong.
    assert!(
        site.bank
            .inject(1, boreal_sim::Fault::FlipBitOnWrite { offset: 5_000 })
    );
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let package = package(NEW, 24 * 1024, 5);
    let id = upload(&engine, request(&package), &package).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(120)).await;
    assert_eq!(record.state(), JobState::Failed, "{record:#?}");
    let failure = record.failure().expect("a failure");
    assert_eq!(failure.code, 780, "{failure:?}");
    assert!(
        failure.message.contains("Verification failed: node 1")
            && failure.message.contains("node 2 done (2.15)"),
        "{}",
        failure.message
    );
    // Node 2 keeps its new firmware, node 1 its old one; neither runs a partial image.
    let nodes = site.nodes();
    assert_eq!(nodes[0].running_version, OLD);
    assert_eq!(nodes[1].running_version, NEW);
    assert_eq!(site.bank.lowest_version(), OLD);
    engine.shutdown().await;
}

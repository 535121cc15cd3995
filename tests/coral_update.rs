//! End to end with the real Coral plugin and the simulated ReefStack: a pack updated
//! module by module, and a module failing half-way through its update; in virtual time.

mod coral_site;

use bmsfw_core::events::EventKind;
use bmsfw_core::job::{JobState, ModuleState};
use bmsfw_core::vrm::GxEngine;
use coral_sim::Fault;
use coral_sim::protocol::module;
use coral_site::*;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn a_pack_of_four_is_updated_master_first_then_each_module() {
    let site = Site::new(4);
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let bundle = bundle(96 * 1024, 24 * 1024, 1);
    let id = upload(&engine, request(&bundle), &bundle).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(300)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");

    // Before: as 0x35F shows it, little-endian 0xMMmm. The package's version is its full
    // one, build included; after the update 0x35F shows its major and minor, the plugin
    // read the build over the protocol, and the job keeps the full version.
    let before = record.version_before().unwrap();
    assert_eq!(
        (before.raw.as_slice(), before.display.as_str()),
        (&[0x0F, 0x01][..], "v1.0F")
    );
    let after = record.version_after().unwrap();
    assert_eq!(
        (after.raw.as_slice(), after.display.as_str()),
        (&NEW[..], "v1.10 (build FF)")
    );
    assert_eq!(record.version_target().unwrap().display, "v1.10 (build FF)");

    // The pack runs the bundle: the master's full 24-bit version, every module's image.
    let status = site.status();
    assert_eq!(status.running_version, NEW);
    assert!(
        status
            .modules
            .iter()
            .all(|m| m.version == MODULE_NEW && m.state == module::DONE),
        "{:?}",
        status.modules
    );

    let history = engine.history(SERIAL).await.unwrap();
    assert_eq!(
        states(&history, id),
        vec![
            JobState::Transferring,
            JobState::Installing,
            JobState::Restarting,
            JobState::Verifying,
            JobState::Completed,
        ]
    );
    assert!(history.iter().any(|e| matches!(
        &e.event,
        EventKind::Completed { version_after, .. } if version_after.raw == NEW
    )));

    // The job kept every module's state and version, from the plugin's status.
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
        (1..=4)
            .map(|i| (i, ModuleState::Done, "v2.04 (build 01)".to_owned()))
            .collect::<Vec<_>>()
    );
    // The event log tells each module's way: pending, updating, done, one after another.
    let module_log: Vec<(u16, ModuleState)> = history
        .iter()
        .filter(|e| e.job == id)
        .filter_map(|e| match &e.event {
            EventKind::Module { index, state, .. } => Some((*index, *state)),
            _ => None,
        })
        .collect();
    let mut expected: Vec<(u16, ModuleState)> =
        (1..=4).map(|i| (i, ModuleState::Pending)).collect();
    for i in 1..=4 {
        expected.push((i, ModuleState::Updating));
        expected.push((i, ModuleState::Done));
    }
    assert_eq!(module_log, expected);

    // Every frame of the bundle crossed the bus once.
    let data: Vec<u32> = site
        .coral_frames_from_gx()
        .iter()
        .filter_map(data_sequence)
        .collect();
    assert_eq!(data.len(), bundle.len().div_ceil(8));
}

#[tokio::test(start_paused = true)]
async fn a_module_failing_mid_propagation_fails_the_job_naming_it_and_the_others() {
    let site = Site::new(4);
    site.bms.inject(Fault::ModuleFails {
        module: 3,
        error: 0x31,
        permille: 400,
    });
    let engine = site.gx();
    wait_for_battery(&engine).await;
    let bundle = bundle(32 * 1024, 16 * 1024, 2);
    let id = upload(&engine, request(&bundle), &bundle).await.unwrap();
    let record = wait_end(&engine, id, Duration::from_secs(300)).await;
    assert_eq!(record.state(), JobState::Failed, "{record:#?}");
    let failure = record.failure().unwrap();
    assert_eq!(failure.code, 784, "{failure:?}");
    let m = &failure.message;
    assert!(m.contains("module 3 of 4 failed"), "{m}");
    assert!(m.contains("refused its image"), "{m}");
    assert!(m.contains("module 1 done, runs v2.04 (build 01)"), "{m}");
    assert!(m.contains("module 2 done, runs v2.04 (build 01)"), "{m}");
    assert!(m.contains("module 3 failed"), "{m}");
    assert!(m.contains("module 4 pending, runs v2.03 (build 01)"), "{m}");

    // The job record says the same, module by module, as the plugin reported it.
    let modules: Vec<(u16, ModuleState, Vec<u8>)> = record
        .modules()
        .iter()
        .map(|m| (m.index, m.state, m.version.as_ref().unwrap().raw.clone()))
        .collect();
    assert_eq!(
        modules,
        vec![
            (1, ModuleState::Done, MODULE_NEW.to_vec()),
            (2, ModuleState::Done, MODULE_NEW.to_vec()),
            (3, ModuleState::Failed, MODULE_OLD.to_vec()),
            (4, ModuleState::Pending, MODULE_OLD.to_vec()),
        ]
    );
    let history = engine.history(SERIAL).await.unwrap();
    let failed_module = history
        .iter()
        .position(|e| {
            matches!(
                e.event,
                EventKind::Module {
                    index: 3,
                    state: ModuleState::Failed,
                    ..
                }
            )
        })
        .expect("the module's failure is logged");
    let failed_job = history
        .iter()
        .position(|e| matches!(e.event, EventKind::Failed { code: 784, .. }))
        .unwrap();
    assert!(
        failed_module < failed_job,
        "the module's failure comes first"
    );

    // The pack: modules 1 and 2 updated, 3 failed on its old firmware, 4 untouched; the
    // master keeps its old firmware and never restarted.
    let status = site.status();
    let pack: Vec<(u8, [u8; 3])> = status
        .modules
        .iter()
        .map(|m| (m.state, m.version))
        .collect();
    assert_eq!(
        pack,
        vec![
            (module::DONE, MODULE_NEW),
            (module::DONE, MODULE_NEW),
            (module::FAILED, MODULE_OLD),
            (module::PENDING, MODULE_OLD),
        ]
    );
    assert_eq!(status.running_version, OLD);
    assert_eq!(status.boots, 0);

    // A retry skips the modules already updated and completes.
    let retry = engine.request_update(request(&bundle)).await.unwrap();
    assert_eq!(retry.first_missing, None);
    engine.finish_upload(retry.job).await.unwrap();
    let record = wait_end(&engine, retry.job, Duration::from_secs(300)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    let states: Vec<u8> = site.status().modules.iter().map(|m| m.state).collect();
    assert_eq!(
        states,
        vec![module::SKIPPED, module::SKIPPED, module::DONE, module::DONE]
    );
}

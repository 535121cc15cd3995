//! Per-module progress of a pack, from the GX's job record through the VRM link's `N/`
//! topics to the portal's model, over the embedded broker.

mod support;

use bmsfw_core::job::{JobEvent, JobFailure, ModuleProgress, ModuleState, Percent, VersionInfo};
use bmsfw_portal::{StoredFile, UpdateOrder};
use bmsfw_vrm_wire::{
    Acknowledgement, FileName, JobState as WireState, ModuleState as WireModule, PortalId,
    VersionPolicy,
};
use std::time::Duration;
use support::*;

const LONG: Duration = Duration::from_secs(20);

fn module(index: u16, state: ModuleState, minor: u8) -> ModuleProgress {
    ModuleProgress {
        index,
        state,
        version: Some(VersionInfo {
            raw: vec![2, minor, 1],
            display: format!("v2.0{minor} (build 01)"),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_module_of_a_pack_reaches_the_portal_with_its_state_and_version() {
    // The secure path: TLS, the GX's and the portal's own credentials, topic rules.
    let secure = support::secure::SecureSite::new();
    let broker = secure.embedded();
    let addr = support::secure::embedded_addr(&broker);
    let dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start_with(&addr, dir.path(), secure.link_config(&addr, dir.path()));
    gx.connected().await;
    let mut staged = gx.staged.take().unwrap();
    let portal = portal_side_with(secure.portal_config(&addr, 1024, 8));
    let pid = PortalId::new(PORTAL_ID).unwrap();
    until_portal(&portal, "the battery listed", LONG, |s| {
        s.installations
            .get(&pid)
            .is_some_and(|i| i.allows_updates() && i.batteries.contains_key(&512))
    })
    .await;

    let id = portal
        .start_update(UpdateOrder {
            portal_id: pid.clone(),
            instance: 512,
            file: StoredFile::new(FileName::new("pack.bin").unwrap(), package(5, 2, 4096, 3)),
            acknowledgements: Acknowledgement::ALL.into_iter().collect(),
            version_policy: VersionPolicy::NewerOnly,
            targets: None,
            user: "installer".into(),
        })
        .await
        .unwrap();
    let job = tokio::time::timeout(LONG, staged.recv())
        .await
        .unwrap()
        .unwrap()
        .job;

    // The pack's stage 2 as a plugin reports it: three modules, the second one failing.
    use ModuleState::*;
    let events = [
        JobEvent::ModulesChanged(vec![
            module(1, Pending, 3),
            module(2, Pending, 3),
            module(3, Pending, 3),
        ]),
        JobEvent::TransferProgress(Percent::FULL),
        JobEvent::InstallStarted,
        JobEvent::ModulesChanged(vec![
            module(1, Updating, 3),
            module(2, Pending, 3),
            module(3, Pending, 3),
        ]),
        JobEvent::ModulesChanged(vec![
            module(1, Done, 4),
            module(2, Updating, 3),
            module(3, Pending, 3),
        ]),
    ];
    for event in events {
        gx.engine.apply(job, event).unwrap();
    }
    let show = |s: &bmsfw_portal::VrmSnapshot| {
        let u = &s.installations[&pid].batteries[&512].update;
        u.modules
            .iter()
            .map(|(i, m)| {
                (
                    *i,
                    m.state,
                    m.version
                        .as_ref()
                        .map(|v| v.display.clone())
                        .unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>()
    };
    let snap = until_portal(&portal, "module 2 updating", LONG, |s| {
        show(s)
            .get(1)
            .is_some_and(|m| m.1 == Some(WireModule::Updating))
    })
    .await;
    assert_eq!(
        show(&snap),
        vec![
            (1, Some(WireModule::Done), "v2.04 (build 01)".into()),
            (2, Some(WireModule::Updating), "v2.03 (build 01)".into()),
            (3, Some(WireModule::Pending), "v2.03 (build 01)".into()),
        ]
    );
    assert_eq!(
        snap.installations[&pid].batteries[&512].update.module_count,
        Some(3)
    );

    gx.engine
        .apply(
            job,
            JobEvent::ModulesChanged(vec![
                module(1, Done, 4),
                module(2, Failed, 3),
                module(3, Pending, 3),
            ]),
        )
        .unwrap();
    gx.engine
        .apply(
            job,
            JobEvent::Failed(JobFailure {
                code: 784,
                message: "module 2 of 3 failed: it refused its image".into(),
                at: bmsfw_core::UnixMillis::now(),
                battery_state: None,
            }),
        )
        .unwrap();
    let snap = until_portal(&portal, "the update failed", LONG, |s| {
        s.updates
            .iter()
            .any(|u| u.commandid == id && u.state == Some(WireState::Failed))
            && show(s)
                .get(1)
                .is_some_and(|m| m.1 == Some(WireModule::Failed))
    })
    .await;
    assert_eq!(
        show(&snap),
        vec![
            (1, Some(WireModule::Done), "v2.04 (build 01)".into()),
            (2, Some(WireModule::Failed), "v2.03 (build 01)".into()),
            (3, Some(WireModule::Pending), "v2.03 (build 01)".into()),
        ]
    );
    let u = snap.updates.iter().find(|u| u.commandid == id).unwrap();
    assert_eq!(u.error_code, Some(784));
}

//! The installer's choice of nodes or modules over MQTT: from the portal's update order,
//! through the update command on the embedded broker, to the GX's job record.

mod support;

use bmsfw_core::vrm::{GxEngine, UpdateTargets};
use bmsfw_portal::{StoredFile, UpdateOrder};
use bmsfw_vrm_wire::{Acknowledgement, FileName, PortalId, TargetList, VersionPolicy};
use std::time::Duration;
use support::*;

const LONG: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chosen_nodes_reach_the_gx_job_in_order() {
    // The secure path: TLS, the GX's and the portal's own credentials, topic rules.
    let secure = support::secure::SecureSite::new();
    let broker = secure.embedded();
    let addr = support::secure::embedded_addr(&broker);
    let dir = tempfile::tempdir().unwrap();
    let gx = Gx::start_with(&addr, dir.path(), secure.link_config(&addr, dir.path()));
    gx.connected().await;
    let portal = portal_side_with(secure.portal_config(&addr, 1024, 8));
    let pid = PortalId::new(PORTAL_ID).unwrap();
    until_portal(&portal, "the battery listed", LONG, |s| {
        s.installations.get(&pid).is_some_and(|i| {
            i.allows_updates()
                && i.batteries
                    .get(&512)
                    .is_some_and(|b| b.eligible == Some(true) && b.serial.is_some())
        })
    })
    .await;
    let order = |name: &str, seed: u8, targets: Option<TargetList>| UpdateOrder {
        portal_id: pid.clone(),
        instance: 512,
        file: StoredFile::new(
            FileName::new(name).unwrap(),
            package(5, 2, 4096 + seed as usize, seed),
        ),
        acknowledgements: Acknowledgement::ALL.into_iter().collect(),
        version_policy: VersionPolicy::NewerOnly,
        targets,
        user: "installer".into(),
    };
    portal
        .start_update(order(
            "bank.bin",
            1,
            Some(TargetList::new(vec![3, 2]).unwrap()),
        ))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + LONG;
    let job = loop {
        if let Some(job) = gx.engine.jobs().await.into_iter().next() {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "no job on the GX");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(job.targets(), &UpdateTargets::Only(vec![2, 3]));
    let all = gx.engine.jobs().await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].package().file_name(), "bank.bin");
}

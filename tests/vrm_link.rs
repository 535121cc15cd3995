//! The VRM link between the portal's MQTT side and a GX (the stage-1 engine behind the
//! link), through a real mosquitto and through the embedded broker.

mod support;

use bmsfw_core::job::JobState;
use bmsfw_core::vrm::LinkConnection;
use bmsfw_portal::{StoredFile, UpdateOrder, VrmSide};
use bmsfw_vrm_wire::command::{DiagnosticsQuery, EventLogQuery};
use bmsfw_vrm_wire::{
    Acknowledgement, BrokerAddr, Command, FileName, JobState as WireState, PortalId, Serial,
    VersionPolicy,
};
use std::time::Duration;
use support::*;

const LONG: Duration = Duration::from_secs(20);

fn order(file: StoredFile) -> UpdateOrder {
    UpdateOrder {
        portal_id: PortalId::new(PORTAL_ID).unwrap(),
        instance: 512,
        file,
        acknowledgements: Acknowledgement::ALL.into_iter().collect(),
        version_policy: VersionPolicy::NewerOnly,
        targets: None,
        user: "installer".into(),
    }
}

fn file(bytes: Vec<u8>) -> StoredFile {
    StoredFile::new(FileName::new("ax5-5.2.bin").unwrap(), bytes)
}

/// Waits until the portal sees the battery as eligible with VRM access Full.
async fn battery_listed(portal: &VrmSide) {
    let id = PortalId::new(PORTAL_ID).unwrap();
    until_portal(portal, "the battery in the device list", LONG, |s| {
        s.installations.get(&id).is_some_and(|i| {
            i.allows_updates()
                && i.batteries
                    .get(&512)
                    .is_some_and(|b| b.eligible == Some(true) && b.serial.is_some())
        })
    })
    .await;
}

/// A whole update over `broker`, secured as `site` says (TLS, the GX's and the portal's
/// own credentials, the broker's topic rules).
async fn a_whole_update(broker: BrokerAddr, site: &support::secure::SecureSite) {
    let dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start_with(&broker, dir.path(), site.link_config(&broker, dir.path()));
    gx.connected().await;
    let done = drive_stage_two(
        gx.engine.clone(),
        gx.staged.take().unwrap(),
        Duration::from_millis(5),
    );
    let portal = portal_side_with(site.portal_config(&broker, 1024, 8));
    battery_listed(&portal).await;
    let snap = portal.snapshot();
    let b = &snap.installations[&PortalId::new(PORTAL_ID).unwrap()].batteries[&512];
    assert_eq!(b.product_name.as_deref(), Some("AX-5"));
    assert_eq!(b.manufacturer.as_deref(), Some("Aurora Cells"));
    assert_eq!(b.firmware_version.as_deref(), Some("v4.15"));
    assert_eq!(b.firmware_raw.as_deref(), Some("040f"));
    assert_eq!(b.soc, Some(78.0));
    assert_eq!(b.voltage, Some(52.4));
    assert_eq!(b.current, Some(-3.2));
    assert_eq!(b.temperature, Some(23.5));
    assert_eq!(b.alarms.get("HighTemperature"), Some(&0));

    let bytes = package(5, 2, 20 * 1024 + 77, 1);
    let id = portal
        .start_update(order(file(bytes.clone())))
        .await
        .unwrap();
    let snap = until_portal(&portal, "the update completed", LONG, |s| {
        s.updates.iter().any(|u| u.commandid == id && u.finished)
    })
    .await;
    let u = snap.updates.iter().find(|u| u.commandid == id).unwrap();
    assert_eq!(u.states_seen, all_states(), "every state, in order");
    assert_eq!(u.state, Some(WireState::Completed));
    assert_eq!(u.error_code, None);
    assert_eq!(u.version_before.as_ref().unwrap().display, "v4.15");
    assert_eq!(u.version_target.as_ref().unwrap().display, "v5.2");
    assert_eq!(u.version_after.as_ref().unwrap().raw, "0502");
    assert_eq!(u.upload.chunks_sent, 21, "20 full chunks and a short one");
    assert_eq!(u.upload.chunks_resent, 0);

    let job = tokio::time::timeout(LONG, async { done_recv(done).await })
        .await
        .unwrap();
    let record = gx.job(job).await;
    assert_eq!(record.state(), JobState::Completed);
    // The staged package is byte for byte what the installer uploaded.
    let staged = gx.staged_files();
    assert_eq!(staged.len(), 1);
    assert_eq!(std::fs::read(&staged[0]).unwrap(), bytes);

    // The device list shows the new firmware and the update's end.
    let pid = PortalId::new(PORTAL_ID).unwrap();
    until_portal(&portal, "the new firmware in the device list", LONG, |s| {
        let b = &s.installations[&pid].batteries[&512];
        b.firmware_version.as_deref() == Some("v5.2")
            && b.update.state == Some(WireState::Completed)
            && b.update.job == Some(job.0)
    })
    .await;

    // The event log: initiation, every state change, versions before and after.
    let reply = portal
        .rpc(
            &pid,
            Command::GetEventLog(EventLogQuery {
                battery: Serial::new(SERIAL).unwrap(),
                limit: 100,
            }),
        )
        .await
        .unwrap();
    let events = reply.events.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"initiated"));
    assert_eq!(kinds.last(), Some(&"completed"));
    let states: Vec<WireState> = events.iter().filter_map(|e| e.state).collect();
    assert_eq!(states, all_states()[1..].to_vec());
    let completed = events.last().unwrap();
    assert_eq!(completed.version_before.as_ref().unwrap().display, "v4.15");
    assert_eq!(completed.version_after.as_ref().unwrap().display, "v5.2");
    assert!(events.iter().all(|e| e.at > 0 && e.job == job.0));

    // The diagnostics bundle of the job.
    let reply = portal
        .rpc(
            &pid,
            Command::GetDiagnostics(DiagnosticsQuery { job: job.0 }),
        )
        .await
        .unwrap();
    let d = reply.diagnostics.unwrap();
    assert_eq!(d["vrm_installation_id"], PORTAL_ID);
    assert_eq!(d["battery"]["serial"], SERIAL);
    assert_eq!(d["job_state"], "completed");
    assert_eq!(d["gx_firmware_version"], "v3.60");

    // Nothing is left waiting in the GX's outbox.
    until("the outbox drained", LONG, || {
        gx.link().status().outbox_pending == 0
    })
    .await;
}

async fn done_recv(
    mut done: tokio::sync::mpsc::UnboundedReceiver<bmsfw_core::job::JobId>,
) -> bmsfw_core::job::JobId {
    done.recv().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_update_over_mosquitto() {
    let site = support::secure::SecureSite::new();
    let broker = site.mosquitto();
    a_whole_update(broker.addr(), &site).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_update_over_the_embedded_broker() {
    let site = support::secure::SecureSite::new();
    let broker = site.embedded();
    a_whole_update(support::secure::embedded_addr(&broker), &site).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_resumes_from_the_first_missing_chunk_after_a_broker_restart() {
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    let _done = drive_stage_two(
        gx.engine.clone(),
        gx.staged.take().unwrap(),
        Duration::from_millis(1),
    );
    let window = 4;
    let portal = portal_side(&broker.addr(), 512, window);
    battery_listed(&portal).await;
    let bytes = package(5, 3, 120 * 512, 2);
    let id = portal
        .start_update(order(file(bytes.clone())))
        .await
        .unwrap();

    // Kill the broker once the GX holds a fifth of the package.
    let engine = gx.engine.clone();
    until("a fifth uploaded", LONG, || {
        let jobs = jobs_now(engine.clone());
        jobs.iter()
            .any(|j| j.state() == JobState::Uploading && j.percent().get() >= 20)
    })
    .await;
    broker.kill();
    let before = portal
        .snapshot()
        .updates
        .iter()
        .find(|u| u.commandid == id)
        .unwrap()
        .upload
        .clone();
    let uploading = jobs_now(engine.clone());
    let held = uploading[0].percent().get();
    assert!(held < 100, "the upload was cut before it ended");
    until("the GX saw the cut", LONG, || {
        gx.link().status().connection == LinkConnection::Disconnected
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.restart();

    let snap = until_portal(&portal, "the upload completed", LONG, |s| {
        s.updates
            .iter()
            .any(|u| u.commandid == id && u.states_seen.contains(&WireState::Transferring))
    })
    .await;
    let u = snap.updates.iter().find(|u| u.commandid == id).unwrap();
    let stats = &u.upload;
    // The GX asked for the first missing chunk: the upload went on from there.
    assert!(!stats.resumes.is_empty(), "no resume: {stats:?}");
    let first_missing = stats.resumes[0];
    assert!(
        first_missing >= before.chunks_acked,
        "resumed at {first_missing}, but {} chunks had been acknowledged",
        before.chunks_acked
    );
    assert!(first_missing > 0, "the upload started over");
    // Only the chunks in flight at the cut were sent again: at most one window per
    // resume (a slow reconnect can make the portal ask a second time).
    assert!(
        stats.chunks_resent <= (window * stats.resumes.len()) as u64,
        "{} chunks re-sent over {} resumes, the window is {window}",
        stats.chunks_resent,
        stats.resumes.len()
    );
    assert!(stats.resumes.len() <= 3, "{stats:?}");
    assert_eq!(
        stats.chunks_sent - stats.chunks_resent,
        120,
        "every chunk sent once, plus the re-sent ones"
    );
    eprintln!(
        "broker restart at {held} %: resumed from chunk {first_missing}, {} of 120 chunks re-sent",
        stats.chunks_resent
    );
    // The package arrived whole and matched its digest.
    until("staged", LONG, || gx.staged_files().len() == 1).await;
    assert_eq!(std::fs::read(&gx.staged_files()[0]).unwrap(), bytes);
}

/// The engine's jobs, read from a synchronous polling closure.
fn jobs_now(engine: StageOneEngine) -> Vec<bmsfw_core::job::JobRecord> {
    use bmsfw_core::vrm::GxEngine;
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async move { engine.jobs().await })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_made_while_the_link_is_down_arrives_in_order_when_it_returns() {
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    let staged = gx.staged.take().unwrap();
    let portal = portal_side(&broker.addr(), 2048, 8);
    battery_listed(&portal).await;
    let id = portal
        .start_update(order(file(package(6, 0, 10_000, 3))))
        .await
        .unwrap();
    until_portal(&portal, "the package staged", LONG, |s| {
        s.updates
            .iter()
            .any(|u| u.commandid == id && u.state == Some(WireState::Transferring))
    })
    .await;

    // Cut the link, then run stage 2 to its end while it is down.
    broker.kill();
    until("the GX saw the cut", LONG, || {
        gx.link().status().connection == LinkConnection::Disconnected
    })
    .await;
    let mut done = drive_stage_two(gx.engine.clone(), staged, Duration::from_millis(2));
    let job = tokio::time::timeout(LONG, done.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gx.job(job).await.state(), JobState::Completed);
    let queue = dir.path().join("vrm/outbox/outbox.jsonl");
    until("the completion queued on disk", LONG, || {
        std::fs::read_to_string(&queue).is_ok_and(|q| q.contains("completed"))
    })
    .await;
    // Ten progress steps, Installing, Restarting, Verifying and Completed wait there.
    until("fourteen status messages waiting", LONG, || {
        gx.link().status().outbox_durable >= 14
    })
    .await;

    broker.restart();
    let snap = until_portal(&portal, "the update completed", LONG, |s| {
        s.updates.iter().any(|u| u.commandid == id && u.finished)
    })
    .await;
    let u = snap.updates.iter().find(|u| u.commandid == id).unwrap();
    assert_eq!(u.states_seen, all_states(), "delivered in order");
    assert_eq!(u.percent, 100);
    assert_eq!(u.version_after.as_ref().unwrap().display, "v6.0");
    until("the outbox drained", LONG, || {
        gx.link().status().outbox_pending == 0
    })
    .await;
    // The event log has the whole update, stage 2 included.
    let reply = portal
        .rpc(
            &PortalId::new(PORTAL_ID).unwrap(),
            Command::GetEventLog(EventLogQuery {
                battery: Serial::new(SERIAL).unwrap(),
                limit: 100,
            }),
        )
        .await
        .unwrap();
    let events = reply.events.unwrap();
    let states: Vec<WireState> = events.iter().filter_map(|e| e.state).collect();
    assert_eq!(states, all_states()[1..].to_vec());
    let progress = events.iter().filter(|e| e.kind == "progress").count();
    assert!(
        progress >= 10,
        "progress milestones of both stages: {progress}"
    );
    assert_eq!(events.last().unwrap().kind, "completed");
    assert_eq!(
        std::fs::metadata(dir.path().join("vrm/outbox/outbox.jsonl"))
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gx_restart_mid_upload_continues_from_the_first_missing_chunk() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    let window = 4;
    let portal = portal_side(&broker.addr(), 512, window);
    battery_listed(&portal).await;
    let bytes = package(5, 4, 100 * 512, 7);
    let id = portal
        .start_update(order(file(bytes.clone())))
        .await
        .unwrap();
    let engine = gx.engine.clone();
    until("a quarter uploaded", LONG, || {
        jobs_now(engine.clone())
            .iter()
            .any(|j| j.state() == JobState::Uploading && j.percent().get() >= 25)
    })
    .await;

    // The GX goes down as a power cut would take it: the link and the engine vanish.
    let Gx { link, engine, .. } = gx;
    drop(link);
    drop(engine);
    let acked_before = portal
        .snapshot()
        .updates
        .iter()
        .find(|u| u.commandid == id)
        .unwrap()
        .upload
        .chunks_acked;

    // A new GX process on the same state directory: the job is still uploading, the
    // partial package and the command's id are on disk, and the GX asks for the rest.
    let mut gx = Gx::start(&broker.addr(), dir.path());
    let _done = drive_stage_two(
        gx.engine.clone(),
        gx.staged.take().unwrap(),
        Duration::from_millis(1),
    );
    let snap = until_portal(&portal, "the update completed", LONG, |s| {
        s.updates.iter().any(|u| u.commandid == id && u.finished)
    })
    .await;
    let u = snap.updates.iter().find(|u| u.commandid == id).unwrap();
    assert_eq!(u.state, Some(WireState::Completed));
    let stats = &u.upload;
    assert!(!stats.resumes.is_empty(), "{stats:?}");
    assert!(stats.resumes[0] >= acked_before, "{stats:?}");
    assert!(
        stats.chunks_resent <= (window * stats.resumes.len()) as u64,
        "{stats:?}"
    );
    assert_eq!(stats.chunks_sent - stats.chunks_resent, 100);
    assert_eq!(std::fs::read(&gx.staged_files()[0]).unwrap(), bytes);
    // One job: the restart resumed it rather than starting another.
    assert_eq!(gx.engine_jobs().await.len(), 1);
}

//! The link's loose ends, through a real mosquitto: retained commands replayed on a
//! reconnect, unknown fields, cancel, the upload bound, and two updates of one file at once.

mod support;

use bmsfw_core::job::{JobId, JobState};
use bmsfw_core::vrm::{BatteryView, GxEngine};
use bmsfw_vrm_wire::command::{CancelCommand, ChunkCommand, UpdateCommand};
use bmsfw_vrm_wire::{
    Acknowledgement, ChunkData, Command, CommandId, FileName, PortalId, RpcCommand, RpcResponse,
    Serial, Sha256Hex, Status, VersionPolicy,
};
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

fn p_in() -> String {
    format!("P/{PORTAL_ID}/in")
}

fn p_out() -> String {
    format!("P/{PORTAL_ID}/out")
}

fn sha(bytes: &[u8]) -> Sha256Hex {
    use sha2::Digest;
    Sha256Hex(sha2::Sha256::digest(bytes).into())
}

fn rpc(id: &str, command: Command) -> Vec<u8> {
    RpcCommand {
        id: CommandId::new(id).unwrap(),
        command,
    }
    .encode()
}

fn portal() -> PortalId {
    PortalId::new(PORTAL_ID).unwrap()
}

/// An update command, signed by the test portal's key as the portal signs it.
fn update_for(id: &str, serial: &str, bytes: &[u8], chunk: u32) -> Vec<u8> {
    let command = UpdateCommand {
        battery: Serial::new(serial).unwrap(),
        file_name: FileName::new("fw.bin").unwrap(),
        size: bytes.len() as u64,
        chunk_size: chunk,
        sha256: sha(bytes),
        acknowledgements: Acknowledgement::ALL.into_iter().collect(),
        version_policy: VersionPolicy::NewerOnly,
        targets: None,
        signature: None,
    };
    let command_id = CommandId::new(id).unwrap();
    let command = portal_signer().sign_update(&portal(), &command_id, command);
    rpc(id, Command::Update(command))
}

fn update(id: &str, bytes: &[u8], chunk: u32) -> Vec<u8> {
    update_for(id, SERIAL, bytes, chunk)
}

fn chunk(id: &str, job: u64, index: u32, data: &[u8]) -> Vec<u8> {
    rpc(
        id,
        Command::UploadChunk(ChunkCommand {
            job,
            index,
            data: ChunkData::new(data.to_vec()).unwrap(),
        }),
    )
}

/// A cancel, signed by the test portal's key.
fn cancel(id: &str, job: u64) -> Vec<u8> {
    let signature = portal_signer().sign_cancel(&portal(), &CommandId::new(id).unwrap(), job);
    rpc(
        id,
        Command::Cancel(CancelCommand {
            job,
            signature: Some(signature),
        }),
    )
}

async fn reply_to(raw: &mut RawClient, id: &str) -> RpcResponse {
    raw.reply(WAIT, |r| {
        r.commandid.as_ref().map(CommandId::as_str) == Some(id)
    })
    .await
}

/// Starts an update; returns its job and the first chunk the GX asks for.
async fn start(raw: &mut RawClient, id: &str, command: Vec<u8>) -> (u64, Option<u32>) {
    raw.publish(&p_in(), command).await;
    let r = reply_to(raw, id).await;
    assert_eq!(r.feedback.status, Status::Starting, "{r:?}");
    let ask = reply_to(raw, id).await;
    assert_eq!(ask.feedback.status, Status::WaitingForChunks, "{ask:?}");
    (r.feedback.job.unwrap(), ask.feedback.first_missing)
}

/// Sends chunk `index` and waits for its acknowledgement.
async fn send_chunk(raw: &mut RawClient, id: &str, job: u64, bytes: &[u8], size: usize, i: u32) {
    let start = i as usize * size;
    let end = (start + size).min(bytes.len());
    raw.publish(&p_in(), chunk(id, job, i, &bytes[start..end]))
        .await;
    let ack = reply_to(raw, id).await;
    assert_eq!(ack.feedback.chunk, Some(i), "{ack:?}");
}

/// A command the GX answers at once: once its reply is here, every message the broker
/// delivered to the GX before it has been handled (one subscription keeps them in order).
async fn barrier(raw: &mut RawClient, id: &str) {
    let log =
        format!(r#"{{"opCommand":["geteventlog",{{"commandid":"{id}","battery":"{SERIAL}"}}]}}"#);
    raw.publish(&p_in(), log.into_bytes()).await;
    let r = reply_to(raw, id).await;
    assert_eq!(r.feedback.status, Status::Finished, "{r:?}");
}

async fn state_of(gx: &Gx, job: u64) -> bmsfw_core::job::JobRecord {
    gx.job(JobId(job)).await
}

async fn wait_job_state(gx: &Gx, job: u64, state: JobState) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if state_of(gx, job).await.state() == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job} never became {state:?}: {:?}",
            state_of(gx, job).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_update_command_replayed_on_connect_never_starts_a_job() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = package(5, 2, 3000, 1);
    // A careless portal leaves an update command retained on the GX's request topic.
    let raw = RawClient::connect(&broker.addr(), &[&p_out()]).await;
    raw.client
        .publish(
            p_in(),
            rumqttc::QoS::AtLeastOnce,
            true,
            update("stale-1", &bytes, 1024),
        )
        .await
        .unwrap();
    // Proof the broker keeps it: a new subscriber gets it replayed.
    // (P/in is the GX's to read: the probe logs in as the GX.)
    let mut probe = RawClient::connect_as(&broker.addr(), PORTAL_ID, &[&p_in()]).await;
    assert!(probe.next(&p_in(), WAIT).await.is_some(), "not retained");

    let mut raw = RawClient::connect(&broker.addr(), &[&p_out()]).await;
    for round in 0..2 {
        // Every start of the GX subscribes afresh, and the broker replays it each time.
        let mut gx = Gx::start(&broker.addr(), dir.path());
        gx.connected().await;
        barrier(&mut raw, &format!("barrier-{round}")).await;
        assert!(gx.engine.jobs().await.is_empty(), "round {round}");
        gx.link.take().unwrap().shutdown().await.unwrap();
    }
    // No reply ever went out under the stale command's id.
    while let Some((_, payload)) = raw.next(&p_out(), Duration::from_millis(200)).await {
        let r = RpcResponse::parse(&payload).unwrap();
        assert_ne!(r.commandid.as_ref().map(CommandId::as_str), Some("stale-1"));
    }

    // The same command published now is acted on: the GX does read this topic.
    let gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    barrier(&mut raw, "barrier-live").await;
    let (job, _) = start(&mut raw, "live-1", update("live-1", &bytes, 1024)).await;
    assert_eq!(state_of(&gx, job).await.state(), JobState::Uploading);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_refuses_an_unknown_field_naming_it() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    let mut raw = RawClient::connect(&broker.addr(), &[&p_out()]).await;
    let bytes = package(5, 2, 3000, 1);

    let mut commands = vec![
        ("u-1", update("u-1", &bytes, 1024)),
        ("c-1", chunk("c-1", 1, 0, &bytes[..1024])),
        ("k-1", cancel("k-1", 1)),
        (
            "s-1",
            br#"{"opCommand":["uploadstatus",{"commandid":"s-1","job":1}]}"#.to_vec(),
        ),
        (
            "e-1",
            br#"{"opCommand":["geteventlog",{"commandid":"e-1","battery":"AUR-0042"}]}"#.to_vec(),
        ),
        (
            "d-1",
            br#"{"opCommand":["getdiagnostics",{"commandid":"d-1","job":1}]}"#.to_vec(),
        ),
    ];
    commands.push((
        "p-1",
        serde_json::to_vec(&serde_json::json!({"opCommand": ["preflight", {
            "commandid": "p-1", "battery": SERIAL, "file_name": "fw.bin",
            "size": bytes.len(), "chunk_size": 1024, "sha256": sha(&bytes).to_string()}]}))
        .unwrap(),
    ));
    for (id, good) in commands {
        let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        v["opCommand"][1]["force"] = serde_json::json!(true);
        raw.publish(&p_in(), serde_json::to_vec(&v).unwrap()).await;
        let r = reply_to(&mut raw, id).await;
        assert_eq!(r.feedback.status, Status::Error, "{id}: {r:?}");
        assert_eq!(r.feedback.error_code, Some(712), "{id}: {r:?}");
        let message = r.feedback.error.unwrap_or_default();
        assert!(
            message.contains("opCommand[1].force") && message.contains("unknown field"),
            "{id}: {message}"
        );
    }
    // A key beside opCommand is refused too, by name.
    let mut v: serde_json::Value = serde_json::from_slice(&update("u-2", &bytes, 1024)).unwrap();
    v["dry_run"] = serde_json::json!(true);
    raw.publish(&p_in(), serde_json::to_vec(&v).unwrap()).await;
    let r = raw.reply(WAIT, |r| r.commandid.is_none()).await;
    assert_eq!(r.feedback.error_code, Some(712), "{r:?}");
    assert!(r.feedback.error.unwrap_or_default().contains("dry_run"));
    // Nothing started.
    assert!(gx.engine.jobs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_an_upload_frees_the_battery_and_a_retry_continues_the_upload() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    let mut raw = RawClient::connect(&broker.addr(), &[&p_out()]).await;
    let bytes = package(5, 2, 5000, 3);

    let (job, _) = start(&mut raw, "up-1", update("up-1", &bytes, 1024)).await;
    send_chunk(&mut raw, "up-1", job, &bytes, 1024, 0).await;
    // A cancel for another command's job is refused and changes nothing.
    raw.publish(&p_in(), cancel("other", job)).await;
    assert_eq!(
        reply_to(&mut raw, "other").await.feedback.error_code,
        Some(714)
    );
    assert_eq!(state_of(&gx, job).await.state(), JobState::Uploading);

    raw.publish(&p_in(), cancel("up-1", job)).await;
    let r = reply_to(&mut raw, "up-1").await;
    assert_eq!(r.feedback.status, Status::Error, "{r:?}");
    assert_eq!(r.feedback.error_code, Some(719), "{r:?}");
    assert_eq!(r.feedback.state, Some(JobState::Failed));
    assert!(r.finished, "the cancel ends the update's command: {r:?}");
    let record = state_of(&gx, job).await;
    assert_eq!(record.state(), JobState::Failed);
    assert_eq!(record.failure().unwrap().code, 719);
    // Chunks for it are refused now; nothing was staged.
    raw.publish(&p_in(), chunk("up-1", job, 1, &bytes[1024..2048]))
        .await;
    assert_eq!(
        reply_to(&mut raw, "up-1").await.feedback.error_code,
        Some(714)
    );
    assert!(gx.staged_files().is_empty());
    // A cancel of the ended job is refused as such.
    raw.publish(&p_in(), cancel("up-1", job)).await;
    assert_eq!(
        reply_to(&mut raw, "up-1").await.feedback.error_code,
        Some(714)
    );

    // The battery is free: a new update of it starts at once, from the chunk kept.
    let (retry, first_missing) = start(&mut raw, "up-2", update("up-2", &bytes, 1024)).await;
    assert_ne!(retry, job);
    assert_eq!(first_missing, Some(1));
    // The event log keeps the cancel with its code.
    let history = gx.engine.history(SERIAL).await.unwrap();
    assert!(
        history.iter().any(|e| e.job == JobId(job)
            && matches!(
                &e.event,
                bmsfw_core::events::EventKind::Failed { code: 719, .. }
            )),
        "{history:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_is_refused_once_the_transfer_to_the_battery_has_begun() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    let mut staged = gx.staged.take().unwrap();
    let mut raw = RawClient::connect(&broker.addr(), &[&p_out()]).await;
    let bytes = package(5, 2, 2048, 3);

    let (job, _) = start(&mut raw, "up-1", update("up-1", &bytes, 1024)).await;
    send_chunk(&mut raw, "up-1", job, &bytes, 1024, 0).await;
    send_chunk(&mut raw, "up-1", job, &bytes, 1024, 1).await;
    let received = reply_to(&mut raw, "up-1").await;
    assert_eq!(
        received.feedback.status,
        Status::FileReceivedOk,
        "{received:?}"
    );
    let handed = tokio::time::timeout(WAIT, staged.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(handed.job, JobId(job));
    assert_eq!(state_of(&gx, job).await.state(), JobState::Transferring);

    raw.publish(&p_in(), cancel("up-1", job)).await;
    let r = raw
        .reply(WAIT, |r| {
            r.commandid.as_ref().map(CommandId::as_str) == Some("up-1")
                && r.feedback.status == Status::Error
        })
        .await;
    assert_eq!(r.feedback.error_code, Some(716), "{r:?}");
    assert!(!r.finished, "the update goes on: {r:?}");
    let message = r.feedback.error.unwrap_or_default();
    assert!(
        message.contains("transfer to the battery has begun"),
        "{message}"
    );
    assert_eq!(state_of(&gx, job).await.state(), JobState::Transferring);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_not_finished_in_time_fails_with_718_and_frees_the_battery() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = link_config(&broker.addr(), dir.path());
    cfg.upload_timeout = Duration::from_secs(2);
    let gx = Gx::start_with(&broker.addr(), dir.path(), cfg.clone());
    gx.connected().await;
    let mut raw = RawClient::connect(&broker.addr(), &[&p_out()]).await;
    let bytes = package(5, 2, 5000, 3);

    // The portal sends one chunk, then goes silent (stopped, lost, restarted).
    let started = tokio::time::Instant::now();
    let (job, _) = start(&mut raw, "up-1", update("up-1", &bytes, 1024)).await;
    send_chunk(&mut raw, "up-1", job, &bytes, 1024, 0).await;
    let r = raw
        .reply(WAIT, |r| {
            r.commandid.as_ref().map(CommandId::as_str) == Some("up-1") && r.finished
        })
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "too early"
    );
    assert_eq!(r.feedback.error_code, Some(718), "{r:?}");
    assert_eq!(r.feedback.state, Some(JobState::Failed));
    assert!(r.feedback.error.unwrap_or_default().contains("2 s"));
    assert_eq!(state_of(&gx, job).await.failure().unwrap().code, 718);

    // The battery is free again.
    let (second, first_missing) = start(&mut raw, "up-2", update("up-2", &bytes, 1024)).await;
    assert_eq!(first_missing, Some(1));
    assert_eq!(state_of(&gx, second).await.state(), JobState::Uploading);

    // The bound counts from the request, across a GX restart: a GX down for longer than
    // the bound fails the upload as soon as it is back.
    let mut gx = gx;
    gx.link.take().unwrap().shutdown().await.unwrap();
    assert_eq!(state_of(&gx, second).await.state(), JobState::Uploading);
    drop(gx);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let gx = Gx::start_with(&broker.addr(), dir.path(), cfg);
    wait_job_state(&gx, second, JobState::Failed).await;
    assert_eq!(state_of(&gx, second).await.failure().unwrap().code, 718);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_batteries_updated_with_the_same_file_at_once_both_stage_it() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), dir.path());
    let second = BatteryView {
        instance: 513,
        bus: "can1".into(),
        identity: bmsfw_core::job::BatteryIdentity {
            serial: "AUR-0043".into(),
            ..battery().identity
        },
        ..battery()
    };
    gx.engine.set_battery(second);
    gx.connected().await;
    let mut staged = gx.staged.take().unwrap();
    let mut raw = RawClient::connect(&broker.addr(), &[&p_out()]).await;
    let bytes = package(5, 2, 6000, 7);

    let (a, _) = start(&mut raw, "a", update("a", &bytes, 1024)).await;
    let (b, _) = start(&mut raw, "b", update_for("b", "AUR-0043", &bytes, 1024)).await;
    assert_ne!(a, b);
    // Interleaved chunks, as two portal sessions send them.
    for i in 0..6u32 {
        let (id, job) = if i % 2 == 0 { ("a", a) } else { ("b", b) };
        let start = i as usize * 1024;
        let end = (start + 1024).min(bytes.len());
        raw.publish(&p_in(), chunk(id, job, i, &bytes[start..end]))
            .await;
        let ack = reply_to(&mut raw, id).await;
        assert_eq!(ack.feedback.status, Status::WaitingForChunks, "{ack:?}");
    }
    // The last chunk completed the file for both: the update that sent it stages the
    // package at once...
    let received = reply_to(&mut raw, "b").await;
    assert_eq!(
        received.feedback.status,
        Status::FileReceivedOk,
        "{received:?}"
    );
    // ... and the other, sending a chunk it has no acknowledgement for, finds it there
    // and stages it too (the package verified again).
    raw.publish(&p_in(), chunk("a", a, 1, &bytes[1024..2048]))
        .await;
    let ack = reply_to(&mut raw, "a").await;
    assert_eq!(ack.feedback.duplicate, Some(true), "{ack:?}");
    let received = reply_to(&mut raw, "a").await;
    assert_eq!(
        received.feedback.status,
        Status::FileReceivedOk,
        "{received:?}"
    );
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let handed = tokio::time::timeout(WAIT, staged.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(handed.package.sha256().0, sha(&bytes).0);
        assert_eq!(std::fs::read(handed.package.path()).unwrap(), bytes);
        jobs.push(handed.job.0);
    }
    jobs.sort();
    assert_eq!(jobs, vec![a.min(b), a.max(b)]);
    for job in [a, b] {
        assert_eq!(state_of(&gx, job).await.state(), JobState::Transferring);
    }
    assert_eq!(gx.staged_files().len(), 1);
}

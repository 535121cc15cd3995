//! A careless or hostile VRM: read-only mode, malformed, oversized, wrong-digest,
//! out-of-order and duplicate chunks and commands. Every one gets an error reply naming what
//! was wrong, nothing bad is staged, and the GX stays healthy. Also the keepalive rules.

mod support;

use bmsfw_core::job::JobState;
use bmsfw_core::vrm::{GxEngine, VrmPortalMode};
use bmsfw_vrm_wire::command::{ChunkCommand, StatusQuery, UpdateCommand};
use bmsfw_vrm_wire::{
    Acknowledgement, ChunkData, Command, CommandId, FileName, RpcCommand, RpcResponse, Serial,
    Sha256Hex, Status, VersionPolicy,
};
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

fn p_in() -> String {
    format!("P/{PORTAL_ID}/in")
}

fn sha(bytes: &[u8]) -> Sha256Hex {
    use sha2::Digest;
    Sha256Hex(sha2::Sha256::digest(bytes).into())
}

/// An update command, signed by the test portal's key as the portal signs it.
fn update(id: &str, bytes: &[u8], chunk: u32, digest: Sha256Hex) -> Vec<u8> {
    update_edited(id, bytes, chunk, digest, |_| {})
}

/// The same with `edit` applied before signing (a command the portal signed as it is).
fn update_edited(
    id: &str,
    bytes: &[u8],
    chunk: u32,
    digest: Sha256Hex,
    edit: impl FnOnce(&mut UpdateCommand),
) -> Vec<u8> {
    let id = CommandId::new(id).unwrap();
    let mut command = UpdateCommand {
        battery: Serial::new(SERIAL).unwrap(),
        file_name: FileName::new("fw.bin").unwrap(),
        size: bytes.len() as u64,
        chunk_size: chunk,
        sha256: digest,
        acknowledgements: Acknowledgement::ALL.into_iter().collect(),
        version_policy: VersionPolicy::NewerOnly,
        targets: None,
        signature: None,
    };
    edit(&mut command);
    let portal = bmsfw_vrm_wire::PortalId::new(PORTAL_ID).unwrap();
    let command = portal_signer().sign_update(&portal, &id, command);
    RpcCommand {
        id,
        command: Command::Update(command),
    }
    .encode()
}

fn chunk(id: &str, job: u64, index: u32, data: &[u8]) -> Vec<u8> {
    RpcCommand {
        id: CommandId::new(id).unwrap(),
        command: Command::UploadChunk(ChunkCommand {
            job,
            index,
            data: ChunkData::new(data.to_vec()).unwrap(),
        }),
    }
    .encode()
}

/// The next reply to `id` (or to an unreadable command, for `None`).
async fn reply_to(raw: &mut RawClient, id: Option<&str>) -> RpcResponse {
    raw.reply(WAIT, |r| r.commandid.as_ref().map(CommandId::as_str) == id)
        .await
}

async fn error_of(raw: &mut RawClient, id: Option<&str>) -> (u32, String) {
    let r = reply_to(raw, id).await;
    assert_eq!(r.feedback.status, Status::Error, "{r:?}");
    (
        r.feedback.error_code.unwrap(),
        r.feedback.error.unwrap_or_default(),
    )
}

/// Starts an update and returns its job id.
async fn start(raw: &mut RawClient, id: &str, bytes: &[u8], chunk: u32) -> u64 {
    raw.publish(&p_in(), update(id, bytes, chunk, sha(bytes)))
        .await;
    let r = reply_to(raw, Some(id)).await;
    assert_eq!(r.feedback.status, Status::Starting, "{r:?}");
    let ask = reply_to(raw, Some(id)).await;
    assert_eq!(ask.feedback.status, Status::WaitingForChunks);
    assert_eq!(ask.feedback.first_missing, Some(0));
    r.feedback.job.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_refuses_every_command_and_write() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let gx = Gx::start(&broker.addr(), dir.path());
    gx.access.set(VrmPortalMode::ReadOnly);
    gx.connected().await;
    let mut raw = RawClient::connect(&broker.addr(), &[&format!("P/{PORTAL_ID}/out"), "N/#"]).await;

    let bytes = package(5, 0, 3000, 9);
    raw.publish(&p_in(), update("ro-1", &bytes, 1024, sha(&bytes)))
        .await;
    let (code, message) = error_of(&mut raw, Some("ro-1")).await;
    assert_eq!(code, 710);
    assert!(message.contains("read-only"), "{message}");
    raw.publish(&p_in(), chunk("ro-1", 1, 0, &bytes[..1024]))
        .await;
    assert_eq!(error_of(&mut raw, Some("ro-1")).await.0, 710);
    let log = br#"{"opCommand":["geteventlog",{"commandid":"ro-2","battery":"AUR-0042"}]}"#;
    raw.publish(&p_in(), log.to_vec()).await;
    assert_eq!(error_of(&mut raw, Some("ro-2")).await.0, 710);
    let write = format!("W/{PORTAL_ID}/settings/0/Settings/Network/VrmPortal");
    raw.publish(&write, br#"{"value": 2, "commandid": "w-1"}"#.to_vec())
        .await;
    assert_eq!(error_of(&mut raw, Some("w-1")).await.0, 710);
    // Nothing started, nothing staged, the setting unchanged.
    assert!(gx.engine.jobs().await.is_empty());
    assert!(gx.staged_files().is_empty());
    assert_eq!(gx.access.get(), VrmPortalMode::ReadOnly);

    // In Full mode the same update starts; writes are still refused (the setting is the
    // GX's own), now with 711.
    gx.access.set(VrmPortalMode::Full);
    let job = start(&mut raw, "full-1", &bytes, 1024).await;
    assert_eq!(
        gx.job(bmsfw_core::job::JobId(job)).await.state(),
        JobState::Uploading
    );
    raw.publish(&write, br#"{"value": 2, "commandid": "w-2"}"#.to_vec())
        .await;
    let (code, message) = error_of(&mut raw, Some("w-2")).await;
    assert_eq!(code, 711);
    assert!(message.contains("Settings/Network/VrmPortal"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_hostile_commands_get_error_replies_and_nothing_is_staged() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut gx = Gx::start(&broker.addr(), dir.path());
    gx.connected().await;
    let mut done = drive_stage_two(
        gx.engine.clone(),
        gx.staged.take().unwrap(),
        Duration::from_millis(1),
    );
    let mut raw = RawClient::connect(&broker.addr(), &[&format!("P/{PORTAL_ID}/out")]).await;

    // Not JSON, not a command, too large: replies under a null id.
    raw.publish(&p_in(), b"{\"opCommand\": [".to_vec()).await;
    let (code, message) = error_of(&mut raw, None).await;
    assert_eq!(code, 712);
    assert!(message.contains("not valid JSON"), "{message}");
    raw.publish(&p_in(), vec![b' '; 100 * 1024]).await;
    let (code, message) = error_of(&mut raw, None).await;
    assert_eq!(code, 712);
    assert!(message.contains("exceeds the limit"), "{message}");
    // Readable id, wrong content: the reply names the field.
    raw.publish(
        &p_in(),
        br#"{"opCommand":["reboot",{"commandid":"x-1"}]}"#.to_vec(),
    )
    .await;
    let (code, message) = error_of(&mut raw, Some("x-1")).await;
    assert_eq!(code, 712);
    assert!(message.contains("reboot"), "{message}");
    let bad_chunk_size = br#"{"opCommand":["update",{"commandid":"x-2","battery":"AUR-0042","file_name":"a.bin","size":10,"chunk_size":0,"sha256":"00","acknowledgements":[]}]}"#;
    raw.publish(&p_in(), bad_chunk_size.to_vec()).await;
    let (code, message) = error_of(&mut raw, Some("x-2")).await;
    assert_eq!(code, 712);
    assert!(message.contains("opCommand[1].chunk_size"), "{message}");

    // Warnings not confirmed.
    let bytes = package(5, 1, 5000, 4);
    let unconfirmed = update_edited("x-3", &bytes, 1024, sha(&bytes), |u| {
        u.acknowledgements = [Acknowledgement::SiteReachable].into_iter().collect();
    });
    raw.publish(&p_in(), unconfirmed).await;
    let (code, message) = error_of(&mut raw, Some("x-3")).await;
    assert_eq!(code, 715);
    assert!(message.contains("backup capacity"), "{message}");

    // A battery this GX does not have.
    let elsewhere = update_edited("x-3", &bytes, 1024, sha(&bytes), |u| {
        u.battery = Serial::new("NOPE-1").unwrap();
    });
    raw.publish(&p_in(), elsewhere).await;
    assert_eq!(error_of(&mut raw, Some("x-3")).await.0, 713);

    // Chunks before any update, for a job of another command, out of range, of the wrong
    // length.
    raw.publish(&p_in(), chunk("x-4", 99, 0, b"abc")).await;
    assert_eq!(error_of(&mut raw, Some("x-4")).await.0, 714);
    let job = start(&mut raw, "up-1", &bytes, 1024).await;
    raw.publish(&p_in(), chunk("x-5", job, 0, &bytes[..1024]))
        .await;
    assert_eq!(error_of(&mut raw, Some("x-5")).await.0, 714);
    raw.publish(&p_in(), chunk("up-1", job, 5, &bytes[..10]))
        .await;
    let (code, message) = error_of(&mut raw, Some("up-1")).await;
    assert_eq!(code, 703);
    assert!(message.contains("chunk 5"), "{message}");
    raw.publish(&p_in(), chunk("up-1", job, 1, &bytes[..10]))
        .await;
    let (code, message) = error_of(&mut raw, Some("up-1")).await;
    assert_eq!(code, 704);
    assert!(message.contains("1024"), "{message}");

    // The same command id again for another file: refused, the first upload untouched.
    let other = package(5, 9, 2000, 5);
    raw.publish(&p_in(), update("up-1", &other, 1024, sha(&other)))
        .await;
    let (code, message) = error_of(&mut raw, Some("up-1")).await;
    assert_eq!(code, 712);
    assert!(message.contains("already started"), "{message}");
    // The same command again (a resend): it answers where the upload stands.
    raw.publish(&p_in(), update("up-1", &bytes, 1024, sha(&bytes)))
        .await;
    let r = reply_to(&mut raw, Some("up-1")).await;
    assert_eq!(r.feedback.status, Status::WaitingForChunks);
    assert_eq!(r.feedback.first_missing, Some(0));
    assert_eq!(gx.engine.jobs().await.len(), 1, "no second job");

    // Out of order and duplicated chunks are fine: a duplicate is flagged and not written.
    let chunks: Vec<&[u8]> = bytes.chunks(1024).collect();
    for (index, expect_first_missing) in [(4u32, 0u32), (2, 0), (0, 1), (2, 1), (1, 3)] {
        raw.publish(&p_in(), chunk("up-1", job, index, chunks[index as usize]))
            .await;
        let r = reply_to(&mut raw, Some("up-1")).await;
        assert_eq!(r.feedback.status, Status::WaitingForChunks, "{r:?}");
        assert_eq!(r.feedback.chunk, Some(index));
        assert_eq!(r.feedback.first_missing, Some(expect_first_missing));
        assert_eq!(
            r.feedback.duplicate,
            Some(index == 2 && expect_first_missing == 1)
        );
    }
    // A status query answers where it stands.
    let status = RpcCommand {
        id: CommandId::new("up-1").unwrap(),
        command: Command::UploadStatus(StatusQuery { job }),
    };
    raw.publish(&p_in(), status.encode()).await;
    assert_eq!(
        reply_to(&mut raw, Some("up-1"))
            .await
            .feedback
            .first_missing,
        Some(3)
    );
    raw.publish(&p_in(), chunk("up-1", job, 3, chunks[3])).await;
    let ack = reply_to(&mut raw, Some("up-1")).await;
    assert_eq!(ack.feedback.first_missing, None);
    let received = reply_to(&mut raw, Some("up-1")).await;
    assert_eq!(received.feedback.status, Status::FileReceivedOk);
    assert_eq!(received.feedback.version_target.unwrap().display, "v5.1");
    let finished = tokio::time::timeout(WAIT, done.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.0, job);
    assert_eq!(std::fs::read(&gx.staged_files()[0]).unwrap(), bytes);

    // A wrong digest: every chunk arrives, the digest does not match, the file is deleted
    // and the job fails with 705. Nothing new is staged.
    let bad = package(5, 2, 3000, 6);
    let mut wrong = sha(&bad);
    wrong.0[0] ^= 0xff;
    raw.publish(&p_in(), update("bad-1", &bad, 1024, wrong))
        .await;
    let job = reply_to(&mut raw, Some("bad-1"))
        .await
        .feedback
        .job
        .unwrap();
    for (i, c) in bad.chunks(1024).enumerate() {
        raw.publish(&p_in(), chunk("bad-1", job, i as u32, c)).await;
    }
    let failure = raw
        .reply(WAIT, |r| {
            r.commandid.as_ref().map(CommandId::as_str) == Some("bad-1")
                && r.feedback.status == Status::Error
        })
        .await;
    assert_eq!(failure.feedback.error_code, Some(705));
    assert!(failure.finished);
    assert_eq!(
        gx.job(bmsfw_core::job::JobId(job)).await.state(),
        JobState::Failed
    );
    assert_eq!(gx.staged_files().len(), 1, "the bad package was not staged");
    let incoming = std::fs::read_dir(dir.path().join("staging/incoming"))
        .unwrap()
        .count();
    assert_eq!(incoming, 0, "its partial file was deleted");

    // A package its plugin refuses (no header): 760, nothing staged.
    let junk = vec![0x55; 2048];
    raw.publish(&p_in(), update("junk-1", &junk, 1024, sha(&junk)))
        .await;
    let job = reply_to(&mut raw, Some("junk-1"))
        .await
        .feedback
        .job
        .unwrap();
    for (i, c) in junk.chunks(1024).enumerate() {
        raw.publish(&p_in(), chunk("junk-1", job, i as u32, c))
            .await;
    }
    let failure = raw
        .reply(WAIT, |r| {
            r.commandid.as_ref().map(CommandId::as_str) == Some("junk-1")
                && r.feedback.status == Status::Error
        })
        .await;
    assert_eq!(failure.feedback.error_code, Some(760));
    assert_eq!(gx.staged_files().len(), 1);

    // Still healthy: a good update goes through.
    let good = package(5, 3, 2500, 8);
    let job = start(&mut raw, "good-1", &good, 1024).await;
    for (i, c) in good.chunks(1024).enumerate() {
        raw.publish(&p_in(), chunk("good-1", job, i as u32, c))
            .await;
    }
    let end = raw
        .reply(WAIT, |r| {
            r.commandid.as_ref().map(CommandId::as_str) == Some("good-1") && r.finished
        })
        .await;
    assert_eq!(end.feedback.status, Status::Finished, "{end:?}");
    assert_eq!(end.feedback.version_after.unwrap().display, "v5.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_flow_while_the_keepalive_is_fresh() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = link_config(&broker.addr(), dir.path());
    cfg.keepalive_window = Duration::from_millis(800);
    let gx = Gx::start_with(&broker.addr(), dir.path(), cfg);
    gx.connected().await;
    let mut raw = RawClient::connect(&broker.addr(), &["N/#"]).await;
    let n = format!("N/{PORTAL_ID}/");

    // Without a keepalive the GX publishes nothing but its presence (retained at every
    // connect, with its last will behind it).
    let presence = format!("{n}system/0/Connected");
    while let Some((topic, payload)) = raw.next(&n, Duration::from_millis(500)).await {
        assert_eq!(topic, presence, "published without a keepalive");
        let p = bmsfw_vrm_wire::PresenceMessage::parse(&payload).unwrap();
        assert!(p.online);
    }

    // A keepalive brings every value.
    raw.publish(&format!("R/{PORTAL_ID}/keepalive"), Vec::new())
        .await;
    let mut seen = std::collections::BTreeMap::new();
    while let Some((topic, payload)) = raw.next(&n, Duration::from_millis(300)).await {
        seen.insert(topic, String::from_utf8(payload).unwrap());
    }
    let get = |path: &str| seen.get(&format!("N/{PORTAL_ID}/{path}")).cloned();
    assert_eq!(get("battery/512/Soc").as_deref(), Some(r#"{"value":78.0}"#));
    assert_eq!(
        get("battery/512/FirmwareVersion").as_deref(),
        Some(r#"{"value":"v4.15"}"#)
    );
    assert_eq!(
        get("settings/0/Settings/Network/VrmPortal").as_deref(),
        Some(r#"{"value":2}"#)
    );
    assert_eq!(
        get("system/0/Batteries").as_deref(),
        Some(r#"{"value":[512]}"#)
    );
    assert_eq!(
        get("battery/512/FirmwareUpdate/State").as_deref(),
        Some(r#"{"value":null}"#)
    );

    // While it is fresh, changes are published.
    let mut b = battery();
    b.soc_percent = Some(64.0);
    gx.engine.set_battery(b.clone());
    let (_, payload) = raw
        .next(&format!("{n}battery/512/Soc"), WAIT)
        .await
        .unwrap();
    assert_eq!(payload, br#"{"value":64.0}"#);
    gx.access.set(VrmPortalMode::ReadOnly);
    let (_, payload) = raw
        .next(&format!("{n}settings/0/Settings/Network/VrmPortal"), WAIT)
        .await
        .unwrap();
    assert_eq!(payload, br#"{"value":1}"#);

    // Once it expires, changes are not; a read still answers.
    tokio::time::sleep(Duration::from_millis(900)).await;
    raw.drain();
    b.soc_percent = Some(60.0);
    gx.engine.set_battery(b);
    assert!(raw.next(&n, Duration::from_millis(400)).await.is_none());
    raw.publish(&format!("R/{PORTAL_ID}/battery/512/Soc"), Vec::new())
        .await;
    let (topic, payload) = raw.next(&n, WAIT).await.unwrap();
    assert_eq!(topic, format!("{n}battery/512/Soc"));
    assert_eq!(payload, br#"{"value":60.0}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_and_free_space_limits_refuse_the_update_before_any_chunk() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let staging = bmsfw_core::staging::StagingConfig {
        max_package_size: 64 * 1024,
        free_space_margin: 1024,
        ..bmsfw_core::staging::StagingConfig::new(dir.path().join("staging"))
    };
    let cfg = link_config(&broker.addr(), dir.path());
    let gx = Gx::start_with_staging(&broker.addr(), dir.path(), cfg.clone(), staging);
    gx.connected().await;
    let mut raw = RawClient::connect(&broker.addr(), &[&format!("P/{PORTAL_ID}/out")]).await;

    // Larger than the GX accepts: 701, before a single chunk.
    let big = package(5, 0, 64 * 1024 + 1, 1);
    raw.publish(&p_in(), update("big-1", &big, 1024, sha(&big)))
        .await;
    let (code, message) = error_of(&mut raw, Some("big-1")).await;
    assert_eq!(code, 701);
    assert!(message.contains("65537"), "{message}");
    assert!(gx.engine.jobs().await.is_empty());
    drop(gx);

    // More than the free space allows (the margin takes it all): 702.
    let staging = bmsfw_core::staging::StagingConfig {
        free_space_margin: u64::MAX / 2,
        ..bmsfw_core::staging::StagingConfig::new(dir.path().join("staging"))
    };
    let gx = Gx::start_with_staging(&broker.addr(), dir.path(), cfg, staging);
    gx.connected().await;
    let small = package(5, 0, 4096, 2);
    raw.publish(&p_in(), update("full-1", &small, 1024, sha(&small)))
        .await;
    let (code, message) = error_of(&mut raw, Some("full-1")).await;
    assert_eq!(code, 702);
    assert!(message.contains("free space"), "{message}");
    assert!(gx.engine.jobs().await.is_empty());
    assert!(gx.staged_files().is_empty());
}

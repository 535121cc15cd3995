//! Signed update commands, end to end: mosquitto, the GX (the engine with the real Aurora
//! plugin and the VRM link) and the simulated Aurora PowerCore on a 500 kbit/s bus. A
//! command the portal did not sign as it is (unsigned, another key, any field altered,
//! stale, replayed, a revoked key) is refused with its code, creates nothing, sends nothing
//! on the bus, and the battery's event log records the refusal. A file whose SHA-256
//! differs from the signed one never reaches the battery.

mod gx_site;
mod support;

use bmsfw_core::engine::Engine;
use bmsfw_core::errors::codes;
use bmsfw_core::events::EventKind;
use bmsfw_core::vrm::authority::CommandSigningConfig;
use bmsfw_core::vrm::{GxEngine, LinkHandle, spawn_link};
use bmsfw_portal::signer::PortalSigner;
use bmsfw_sim::bus::{NodeId, SimBus};
use bmsfw_vrm_wire::command::{CancelCommand, ChunkCommand, UpdateCommand};
use bmsfw_vrm_wire::signature::{Nonce, sign_cancel, sign_update};
use bmsfw_vrm_wire::{
    Acknowledgement, ChunkData, Command, CommandId, FileName, PortalId, RpcCommand, RpcResponse,
    Serial, Sha256Hex, Status, TargetList, VersionPolicy,
};
use ed25519_dalek::SigningKey;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use support::{Mosquitto, PORTAL_ID, RawClient, link_config, portal_signer};

const WAIT: Duration = Duration::from_secs(20);
const CHUNK: u32 = 1024;

fn sha(bytes: &[u8]) -> Sha256Hex {
    use sha2::Digest;
    Sha256Hex(sha2::Sha256::digest(bytes).into())
}

fn now_ms() -> u64 {
    bmsfw_core::UnixMillis::now().0
}

fn portal() -> PortalId {
    PortalId::new(PORTAL_ID).unwrap()
}

/// The update of the site's battery with `package`, unsigned.
fn command(package: &[u8]) -> UpdateCommand {
    UpdateCommand {
        battery: Serial::new(gx_site::SERIAL).unwrap(),
        file_name: FileName::new("powercore10-4.16.bin").unwrap(),
        size: package.len() as u64,
        chunk_size: CHUNK,
        sha256: sha(package),
        acknowledgements: Acknowledgement::ALL.into_iter().collect(),
        version_policy: VersionPolicy::NewerOnly,
        targets: None,
        signature: None,
    }
}

fn signed_with(key: &SigningKey, id: &str, u: &UpdateCommand, ts: u64, nonce: u8) -> UpdateCommand {
    let mut u = u.clone();
    u.signature = Some(sign_update(
        key,
        &portal(),
        &CommandId::new(id).unwrap(),
        &u,
        ts,
        Nonce([nonce; 16]),
    ));
    u
}

/// A change of a signed command.
type Change = fn(&mut UpdateCommand);

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The key of the test portal (the one every test GX trusts).
fn portal_key() -> SigningKey {
    SigningKey::from_bytes(&support::PORTAL_KEY_SECRET)
}

fn rpc(id: &str, command: Command) -> Vec<u8> {
    RpcCommand {
        id: CommandId::new(id).unwrap(),
        command,
    }
    .encode()
}

struct Rig {
    site: gx_site::Site,
    engine: Arc<Engine>,
    gx_node: NodeId,
    link: Option<LinkHandle>,
    broker: Mosquitto,
    raw: RawClient,
    state: PathBuf,
}

impl Rig {
    async fn start(signing: CommandSigningConfig) -> Rig {
        let broker = Mosquitto::start();
        let site = gx_site::Site::on(SimBus::new("can0", 500_000), [4, 15]);
        let (engine, gx_node) = site.gx_with(site.config());
        gx_site::wait_for_battery(&engine).await;
        let engine = Arc::new(engine);
        let state = site.dir.path().join("state");
        let raw = RawClient::connect(&broker.addr(), &[&format!("P/{PORTAL_ID}/out")]).await;
        let mut rig = Rig {
            site,
            engine,
            gx_node,
            link: None,
            broker,
            raw,
            state,
        };
        rig.start_link(signing).await;
        rig
    }

    async fn start_link(&mut self, signing: CommandSigningConfig) {
        let mut cfg = link_config(&self.broker.addr(), &self.state);
        cfg.command_signing = signing;
        let link = spawn_link(
            cfg,
            Arc::clone(&self.engine) as Arc<dyn GxEngine>,
            self.engine.vrm_access().clone(),
        )
        .unwrap();
        let mut watch = link.watch();
        tokio::time::timeout(
            WAIT,
            watch.wait_for(|s| s.connection == bmsfw_core::vrm::LinkConnection::Connected),
        )
        .await
        .expect("the GX link did not connect")
        .unwrap();
        self.link = Some(link);
    }

    async fn restart_link(&mut self, signing: CommandSigningConfig) {
        if let Some(link) = self.link.take() {
            link.shutdown().await.unwrap();
        }
        self.start_link(signing).await;
    }

    /// Frames on the Aurora plugin's request identifier (0x7E2: every step of an update,
    /// from the first session request to the last block) since the bus started. The GX's
    /// idle traffic (its keep-alive pair) is on other identifiers.
    fn gx_frames(&self) -> u64 {
        let request = bmsfw_can::CanId::standard(0x7E2).expect("an 11-bit identifier");
        assert!(
            self.site
                .bus
                .node_info(self.gx_node)
                .is_some_and(|n| n.counters.sent > 0),
            "the GX sends nothing at all: the frame count proves nothing"
        );
        self.site
            .bus
            .load_per_id()
            .into_iter()
            .filter(|(id, _)| *id == request)
            .map(|(_, load)| load.frames)
            .sum()
    }

    /// Sends `payload` on `P/<id>/in` and returns the first reply to `id`.
    async fn send(&mut self, id: &str, payload: Vec<u8>) -> RpcResponse {
        self.raw
            .publish(&format!("P/{PORTAL_ID}/in"), payload)
            .await;
        self.raw
            .reply(WAIT, |r| {
                r.commandid.as_ref().map(CommandId::as_str) == Some(id)
            })
            .await
    }

    /// Sends the update `u` under `id`; asserts it is refused with `code` before anything
    /// happened (no job, no frame, no staged file) and that the event log says so.
    async fn refused(&mut self, id: &str, u: UpdateCommand, code: u32, case: &str) {
        let jobs_before = self.engine.jobs().await.len();
        let frames_before = self.gx_frames();
        // Recorded under the battery the command names.
        let serial = u.battery.as_str().to_owned();
        let reply = self.send(id, rpc(id, Command::Update(u))).await;
        assert_eq!(reply.feedback.status, Status::Error, "{case}: {reply:?}");
        assert_eq!(reply.feedback.error_code, Some(code), "{case}: {reply:?}");
        assert!(reply.finished, "{case}");
        assert_eq!(self.engine.jobs().await.len(), jobs_before, "{case}: a job");
        // Give a wrongly started job time to reach the bus before looking.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(self.gx_frames(), frames_before, "{case}: frames on the bus");
        let history = self.engine.history(&serial).await.unwrap();
        let logged = history.iter().any(|e| {
            matches!(&e.event, EventKind::CommandRefused { commandid, code: c, .. }
                if commandid == id && *c == code)
        });
        assert!(
            logged,
            "{case}: the event log does not record it: {history:#?}"
        );
    }

    /// Sends the update `u` under `id`; asserts the signature passed (the command reached
    /// the acknowledgement check, which refuses it with 715 without creating anything).
    async fn authorised(&mut self, id: &str, u: UpdateCommand, case: &str) {
        let reply = self.send(id, rpc(id, Command::Update(u))).await;
        assert_eq!(
            reply.feedback.error_code,
            Some(codes::ACKNOWLEDGEMENT_MISSING),
            "{case}: {reply:?}"
        );
    }
}

/// An update the portal signed but whose acknowledgements lack one: the GX checks the
/// signature first, then refuses the acknowledgements (715) without creating anything.
fn unacknowledged(package: &[u8]) -> UpdateCommand {
    let mut u = command(package);
    u.acknowledgements
        .remove(&Acknowledgement::MaintenanceWindow);
    u
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_not_signed_as_sent_are_refused_before_anything_happens() {
    let mut rig = Rig::start(CommandSigningConfig::trusting([
        portal_signer().public_key()
    ]))
    .await;
    let package = gx_site::package([4, 16], 8 * 1024, 1);
    let base = command(&package);
    let k = portal_key();
    let now = now_ms();
    let inactive = rig.site.status().inactive_len;

    rig.refused(
        "unsigned",
        base.clone(),
        codes::COMMAND_UNSIGNED,
        "unsigned",
    )
    .await;
    rig.refused(
        "stranger",
        signed_with(&key(9), "stranger", &base, now, 1),
        codes::COMMAND_SIGNATURE_INVALID,
        "signed with another key",
    )
    .await;

    // Every field altered after signing.
    let good = signed_with(&k, "t", &base, now, 2);
    let tampered: Vec<(&str, Change)> = vec![
        ("battery", |u| {
            u.battery = Serial::new("AUR10-999999").unwrap()
        }),
        ("file_name", |u| {
            u.file_name = FileName::new("other.bin").unwrap()
        }),
        ("size", |u| u.size -= 1),
        ("chunk_size", |u| u.chunk_size = 2048),
        ("sha256", |u| u.sha256.0[0] ^= 0x80),
        ("acknowledgements", |u| {
            u.acknowledgements.remove(&Acknowledgement::SiteReachable);
        }),
        ("version_policy", |u| {
            u.version_policy = VersionPolicy::AllowReinstallOrDowngrade
        }),
        ("targets", |u| {
            u.targets = Some(TargetList::new(vec![1]).unwrap())
        }),
        ("timestamp", |u| {
            if let Some(s) = &mut u.signature {
                s.timestamp_ms += 1;
            }
        }),
        ("nonce", |u| {
            if let Some(s) = &mut u.signature {
                s.nonce.0[15] ^= 1;
            }
        }),
        ("signature", |u| {
            if let Some(s) = &mut u.signature {
                s.value.0[10] ^= 1;
            }
        }),
    ];
    for (field, change) in tampered {
        let mut u = good.clone();
        change(&mut u);
        // Sent under the id it was signed for.
        rig.refused("t", u, codes::COMMAND_SIGNATURE_INVALID, field)
            .await;
    }
    // The same signed fields under another command id, or signed for another GX.
    rig.refused(
        "t-other-id",
        good.clone(),
        codes::COMMAND_SIGNATURE_INVALID,
        "command id",
    )
    .await;
    let mut for_other_gx = base.clone();
    for_other_gx.signature = Some(sign_update(
        &k,
        &PortalId::new("ffffffffffff").unwrap(),
        &CommandId::new("o").unwrap(),
        &base,
        now,
        Nonce([3; 16]),
    ));
    rig.refused(
        "o",
        for_other_gx,
        codes::COMMAND_SIGNATURE_INVALID,
        "portal id",
    )
    .await;

    // Stale and from the future (the window is 300 s).
    rig.refused(
        "old",
        signed_with(&k, "old", &base, now_ms() - 400_000, 4),
        codes::COMMAND_STALE,
        "stale",
    )
    .await;
    rig.refused(
        "future",
        signed_with(&k, "future", &base, now_ms() + 400_000, 5),
        codes::COMMAND_STALE,
        "from the future",
    )
    .await;
    assert!(rig.engine.jobs().await.is_empty());
    assert_eq!(
        rig.site.status().inactive_len,
        inactive,
        "the BMS received nothing"
    );

    // A good command is obeyed; its file, altered on the way (another file of the same
    // size), fails stage 1 with 705 before any frame.
    let frames = rig.gx_frames();
    let signed = signed_with(&k, "good", &base, now_ms(), 6);
    let message = rpc("good", Command::Update(signed));
    let reply = rig.send("good", message.clone()).await;
    assert_eq!(reply.feedback.status, Status::Starting, "{reply:?}");
    let job = reply.feedback.job.expect("the job");
    let other = gx_site::package([4, 16], 8 * 1024, 2);
    assert_ne!(sha(&other), base.sha256);
    rig.raw.drain();
    for (index, data) in other.chunks(CHUNK as usize).enumerate() {
        let chunk = Command::UploadChunk(ChunkCommand {
            job,
            index: index as u32,
            data: ChunkData::new(data.to_vec()).unwrap(),
        });
        rig.raw
            .publish(&format!("P/{PORTAL_ID}/in"), rpc("good", chunk))
            .await;
    }
    let failed = rig
        .raw
        .reply(WAIT, |r| {
            r.commandid.as_ref().map(CommandId::as_str) == Some("good") && r.finished
        })
        .await;
    assert_eq!(
        failed.feedback.error_code,
        Some(codes::UPLOAD_CORRUPTED),
        "{failed:?}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        rig.gx_frames(),
        frames,
        "frames on the bus for a wrong file"
    );
    assert_eq!(
        rig.site.status().inactive_len,
        inactive,
        "the BMS received nothing"
    );
    let history = rig.engine.history(gx_site::SERIAL).await.unwrap();
    assert!(
        history
            .iter()
            .any(|e| e.event.code() == Some(codes::UPLOAD_CORRUPTED)),
        "{history:#?}"
    );

    // The same message again (its job has ended): a replay.
    let jobs = rig.engine.jobs().await.len();
    let reply = rig.send("good", message.clone()).await;
    assert_eq!(
        reply.feedback.error_code,
        Some(codes::COMMAND_REPLAYED),
        "{reply:?}"
    );
    assert_eq!(rig.engine.jobs().await.len(), jobs);

    // And after a restart of the link: the nonce store is on disk.
    rig.restart_link(CommandSigningConfig::trusting([
        portal_signer().public_key()
    ]))
    .await;
    let frames = rig.gx_frames();
    let reply = rig.send("good", message).await;
    assert_eq!(
        reply.feedback.error_code,
        Some(codes::COMMAND_REPLAYED),
        "{reply:?}"
    );
    assert_eq!(rig.engine.jobs().await.len(), jobs);
    assert_eq!(rig.gx_frames(), frames);

    // What the counts above would have seen: a signed command with its own file reaches
    // the battery.
    let reply = rig
        .send(
            "real",
            rpc(
                "real",
                Command::Update(signed_with(&k, "real", &base, now_ms(), 7)),
            ),
        )
        .await;
    assert_eq!(reply.feedback.status, Status::Starting, "{reply:?}");
    let job = reply.feedback.job.expect("the job");
    for (index, data) in package.chunks(CHUNK as usize).enumerate() {
        let chunk = Command::UploadChunk(ChunkCommand {
            job,
            index: index as u32,
            data: ChunkData::new(data.to_vec()).unwrap(),
        });
        rig.raw
            .publish(&format!("P/{PORTAL_ID}/in"), rpc("real", chunk))
            .await;
    }
    support::until("update frames on the bus", WAIT, || {
        rig.gx_frames() > frames
    })
    .await;
    rig.link.take().unwrap().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_overlaps_and_a_revoked_key_is_refused() {
    let old = portal_key();
    let new = key(0x77);
    let old_public = PortalSigner::from_secret(support::PORTAL_KEY_SECRET).public_key();
    let new_public = PortalSigner::from_secret([0x77; 32]).public_key();
    let mut rig = Rig::start(CommandSigningConfig::trusting([old_public])).await;
    let package = gx_site::package([4, 16], 4 * 1024, 1);
    let u = unacknowledged(&package);

    // Before the rotation: the new key is unknown.
    rig.authorised("a1", signed_with(&old, "a1", &u, now_ms(), 1), "old key")
        .await;
    rig.refused(
        "a2",
        signed_with(&new, "a2", &u, now_ms(), 2),
        codes::COMMAND_SIGNATURE_INVALID,
        "new key before the rotation",
    )
    .await;

    // The overlap: both keys.
    rig.restart_link(CommandSigningConfig::trusting([old_public, new_public]))
        .await;
    rig.authorised(
        "b1",
        signed_with(&old, "b1", &u, now_ms(), 3),
        "old key in the overlap",
    )
    .await;
    rig.authorised(
        "b2",
        signed_with(&new, "b2", &u, now_ms(), 4),
        "new key in the overlap",
    )
    .await;

    // After it: the old key revoked.
    let after = CommandSigningConfig {
        portal_keys: vec![new_public],
        revoked_keys: vec![old_public],
        ..CommandSigningConfig::default()
    };
    rig.restart_link(after).await;
    rig.refused(
        "c1",
        signed_with(&old, "c1", &u, now_ms(), 5),
        codes::COMMAND_KEY_REVOKED,
        "old key after revocation",
    )
    .await;
    rig.authorised(
        "c2",
        signed_with(&new, "c2", &u, now_ms(), 6),
        "new key after",
    )
    .await;

    // A cancel must be signed as well: unsigned, or with the revoked key, it is refused
    // (the update goes on) and the event log records it.
    let full = command(&package);
    let reply = rig
        .send(
            "e1",
            rpc(
                "e1",
                Command::Update(signed_with(&new, "e1", &full, now_ms(), 8)),
            ),
        )
        .await;
    assert_eq!(reply.feedback.status, Status::Starting, "{reply:?}");
    let job = reply.feedback.job.expect("the job");
    // The update asks for its chunks next; the cancels' replies come after.
    rig.raw
        .reply(WAIT, |r| {
            r.commandid.as_ref().map(CommandId::as_str) == Some("e1")
                && r.feedback.status == Status::WaitingForChunks
        })
        .await;
    let cancel = |signature| rpc("e1", Command::Cancel(CancelCommand { job, signature }));
    let e1 = CommandId::new("e1").unwrap();
    for (signature, code) in [
        (None, codes::COMMAND_UNSIGNED),
        (
            Some(sign_cancel(
                &old,
                &portal(),
                &e1,
                job,
                now_ms(),
                Nonce([9; 16]),
            )),
            codes::COMMAND_KEY_REVOKED,
        ),
        (
            Some(sign_cancel(
                &new,
                &portal(),
                &e1,
                job + 1,
                now_ms(),
                Nonce([10; 16]),
            )),
            codes::COMMAND_SIGNATURE_INVALID,
        ),
    ] {
        let reply = rig.send("e1", cancel(signature)).await;
        assert_eq!(reply.feedback.error_code, Some(code), "{reply:?}");
        assert!(!reply.finished, "a refused cancel does not end the update");
        let record = rig
            .engine
            .jobs()
            .await
            .into_iter()
            .find(|r| r.id().0 == job)
            .expect("the job");
        assert_eq!(record.state(), bmsfw_core::job::JobState::Uploading);
        let history = rig.engine.history(gx_site::SERIAL).await.unwrap();
        assert!(
            history.iter().any(|e| matches!(&e.event,
                EventKind::CommandRefused { command, commandid, code: c, .. }
                    if command == "cancel" && commandid == "e1" && *c == code)),
            "{history:#?}"
        );
    }
    // Signed with the key in force, it is obeyed.
    let signed = sign_cancel(&new, &portal(), &e1, job, now_ms(), Nonce([11; 16]));
    let reply = rig.send("e1", cancel(Some(signed))).await;
    assert!(
        !reply
            .feedback
            .error_code
            .is_some_and(|c| (800..=819).contains(&c)),
        "{reply:?}"
    );

    // A GX that trusts no key refuses everything.
    rig.restart_link(CommandSigningConfig::default()).await;
    rig.refused(
        "d1",
        signed_with(&new, "d1", &u, now_ms(), 7),
        codes::COMMAND_KEYS_NOT_CONFIGURED,
        "no key configured",
    )
    .await;
    rig.link.take().unwrap().shutdown().await.unwrap();
}

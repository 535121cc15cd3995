//! What the link, portal and browser tests share: a private mosquitto, a GX made of the
//! stage-1 engine and the VRM link, a stage-2 driver that plays the transfer's phases, and a
//! raw MQTT client for hostile messages.
#![allow(dead_code)]

use bmsfw_core::diagnostics::SiteInfo;
use bmsfw_core::job::{
    BatteryIdentity, JobEvent, JobId, JobRecord, JobState, Percent, StateDir, VersionInfo,
};
use bmsfw_core::staging::{
    AcceptedPackage, InspectionFailure, PackageCandidate, PackageInspector, SignatureStatus,
    StagingConfig,
};
use bmsfw_core::vrm::{
    AlarmLevel, AlarmView, BatteryView, Eligibility, GxEngine, LinkConfig, LinkConnection,
    LinkHandle, Presence, VrmAccess, VrmPortalMode, spawn_link,
};
use bmsfw_portal::{VrmConfig, VrmSide};
use bmsfw_vrm_wire::{BrokerAddr, PortalId, RpcResponse};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub mod daemon;
pub mod secure;
pub mod stage_one;

pub use stage_one::{StageOneEngine, StagedJob};

pub const PORTAL_ID: &str = "c0619ab1e2f3";
pub const SERIAL: &str = "AUR-0042";

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn wait_listening(port: u16, up: bool) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let listening = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok();
        if listening == up {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "port {port} did not become {}",
        if up { "open" } else { "closed" }
    );
}

/// A private mosquitto on a free loopback port, killed when dropped: the secure link an
/// integrator runs, with TLS (a certificate of a CA made for it), a password file with
/// the portal and the test GX provisioned, and bmsfw's ACL file. The support functions
/// that take its address ([`link_config`], [`portal_config`], [`RawClient::connect`])
/// connect over TLS with the right identity.
pub struct Mosquitto {
    port: u16,
    site: Arc<secure::SecureSite>,
    /// Plain MQTT (Venus OS's local broker), not the secure link.
    plain: bool,
    child: Option<Child>,
}

/// The secure sites of the brokers running, by port.
fn secure_sites()
-> &'static std::sync::Mutex<std::collections::HashMap<u16, Arc<secure::SecureSite>>> {
    static SITES: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<u16, Arc<secure::SecureSite>>>,
    > = std::sync::OnceLock::new();
    SITES.get_or_init(Default::default)
}

/// The secure site of the broker at `broker`, when it is one of [`Mosquitto`]'s.
pub fn secure_site(broker: &BrokerAddr) -> Option<Arc<secure::SecureSite>> {
    if !broker.tls {
        return None;
    }
    secure_sites()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&broker.port)
        .cloned()
}

impl Mosquitto {
    /// Starts one (mosquitto must be installed: scripts/test-all installs it).
    pub fn start() -> Mosquitto {
        let site = Arc::new(secure::SecureSite::new());
        let port = free_port();
        secure_sites()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port, site.clone());
        let mut m = Mosquitto {
            port,
            site,
            plain: false,
            child: None,
        };
        m.spawn();
        m
    }

    /// A plain broker on loopback, as Venus OS runs its own on a GX (local clients only,
    /// no TLS, no logins): for the tests of the site's state read from Venus OS, never for
    /// the VRM link.
    pub fn start_plain() -> Mosquitto {
        let mut m = Mosquitto {
            port: free_port(),
            site: Arc::new(secure::SecureSite::new()),
            plain: true,
            child: None,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        self.child = Some(if self.plain {
            self.site.spawn_plain_mosquitto(self.port)
        } else {
            self.site.spawn_mosquitto(self.port)
        });
        wait_listening(self.port, true);
    }

    /// The broker's address (`mqtts://localhost:port`; `mqtt://127.0.0.1:port` for a
    /// plain one).
    pub fn addr(&self) -> BrokerAddr {
        if self.plain {
            BrokerAddr::new("127.0.0.1", self.port)
        } else {
            BrokerAddr::tls("localhost", self.port)
        }
    }

    /// Kills the broker (every connection drops, nothing is kept).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_listening(self.port, false);
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Accepts packages that start with `TESTPKG` followed by two version bytes (major,
/// minor), as the battery's plugin would; refuses anything else with 760.
pub struct HeaderInspector;

pub const PACKAGE_MAGIC: &[u8] = b"TESTPKG";

impl PackageInspector for HeaderInspector {
    fn inspect(
        &self,
        candidate: &PackageCandidate<'_>,
    ) -> Result<AcceptedPackage, InspectionFailure> {
        let bytes = std::fs::read(candidate.path).map_err(|e| InspectionFailure {
            code: 760,
            message: e.to_string(),
        })?;
        let header = bytes
            .strip_prefix(PACKAGE_MAGIC)
            .filter(|rest| rest.len() >= 2)
            .ok_or_else(|| InspectionFailure {
                code: 760,
                message: "not a package: the header is missing".into(),
            })?;
        Ok(AcceptedPackage {
            vendor: "aurora".into(),
            products: vec!["AX-5".into()],
            version: VersionInfo {
                raw: header[..2].to_vec(),
                display: format!("v{}.{}", header[0], header[1]),
            },
            signature: SignatureStatus::Unsigned,
            modules: Vec::new(),
        })
    }
}

/// A package of `len` bytes for firmware `major.minor`, its content derived from `seed`.
pub fn package(major: u8, minor: u8, len: usize, seed: u8) -> Vec<u8> {
    let mut bytes = PACKAGE_MAGIC.to_vec();
    bytes.extend([major, minor]);
    let mut x = u32::from(seed) | 1;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push(x as u8);
    }
    bytes.truncate(len);
    bytes
}

pub fn battery() -> BatteryView {
    BatteryView {
        instance: 512,
        bus: "can0".into(),
        identity: BatteryIdentity {
            manufacturer: "Aurora Cells".into(),
            model: "AX-5".into(),
            serial: SERIAL.into(),
        },
        firmware: Some(VersionInfo {
            raw: vec![4, 15],
            display: "v4.15".into(),
        }),
        soc_percent: Some(78.0),
        voltage_v: Some(52.4),
        current_a: Some(-3.2),
        temperature_c: Some(23.5),
        alarms: vec![AlarmView {
            name: "HighTemperature".into(),
            level: AlarmLevel::Ok,
        }],
        presence: Presence::Communicating,
        eligibility: Eligibility::Eligible {
            vendor: "aurora".into(),
        },
    }
}

/// A GX: the stage-1 engine on a state directory and the VRM link.
pub struct Gx {
    pub state: PathBuf,
    pub engine: StageOneEngine,
    pub access: VrmAccess,
    pub link: Option<LinkHandle>,
    pub staged: Option<mpsc::UnboundedReceiver<StagedJob>>,
    broker: BrokerAddr,
}

/// The secret of the test portal's command-signing key.
pub const PORTAL_KEY_SECRET: [u8; 32] = [0x5a; 32];

/// The test portal's command-signing key: every test GX trusts it.
pub fn portal_signer() -> Arc<bmsfw_portal::signer::PortalSigner> {
    Arc::new(bmsfw_portal::signer::PortalSigner::from_secret(
        PORTAL_KEY_SECRET,
    ))
}

/// Writes the test portal's key file at `path`, as the portal keeps it (hex, mode 0600).
pub fn write_portal_key(path: &Path) {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).unwrap();
    let hex: String = PORTAL_KEY_SECRET
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    writeln!(file, "{hex}").unwrap();
}

pub fn link_config(broker: &BrokerAddr, state: &Path) -> LinkConfig {
    let mut cfg = LinkConfig::new(
        PortalId::new(PORTAL_ID).unwrap(),
        broker.clone(),
        state.join("vrm"),
    );
    cfg.command_signing =
        bmsfw_core::vrm::authority::CommandSigningConfig::trusting([portal_signer().public_key()]);
    if let Some(site) = secure_site(broker) {
        cfg.mqtt_security = site.security(broker, Some(site.credentials(PORTAL_ID)));
    }
    cfg.gx_firmware_version = "v3.60".into();
    cfg.keepalive_window = Duration::from_secs(60);
    cfg.mqtt_keep_alive = Duration::from_secs(2);
    cfg.reconnect_delay = Duration::from_millis(100);
    cfg
}

impl Gx {
    /// Starts a GX with one eligible battery, VRM access Full.
    pub fn start(broker: &BrokerAddr, state: &Path) -> Gx {
        Gx::start_with(broker, state, link_config(broker, state))
    }

    pub fn start_with(broker: &BrokerAddr, state: &Path, cfg: LinkConfig) -> Gx {
        let staging = StagingConfig {
            free_space_margin: 1024 * 1024,
            ..StagingConfig::new(StateDir::new(state).staging())
        };
        Gx::start_with_staging(broker, state, cfg, staging)
    }

    pub fn start_with_staging(
        broker: &BrokerAddr,
        state: &Path,
        cfg: LinkConfig,
        staging: StagingConfig,
    ) -> Gx {
        let dir = StateDir::new(state);
        let (engine, staged) = StageOneEngine::open(
            &dir,
            staging,
            Box::new(HeaderInspector),
            SiteInfo {
                vrm_installation_id: PORTAL_ID.into(),
                gx_firmware_version: "v3.60".into(),
            },
        )
        .unwrap();
        engine.set_battery(battery());
        let access = VrmAccess::new(VrmPortalMode::Full);
        let link = spawn_link(cfg, Arc::new(engine.clone()), access.clone()).unwrap();
        Gx {
            state: state.to_path_buf(),
            engine,
            access,
            link: Some(link),
            staged: Some(staged),
            broker: broker.clone(),
        }
    }

    pub fn link(&self) -> &LinkHandle {
        self.link.as_ref().unwrap()
    }

    /// Waits until the link is connected.
    pub async fn connected(&self) {
        let mut watch = self.link().watch();
        let ok = tokio::time::timeout(
            Duration::from_secs(10),
            watch.wait_for(|s| s.connection == LinkConnection::Connected),
        )
        .await;
        assert!(ok.is_ok(), "GX link did not connect");
    }

    pub async fn job(&self, id: JobId) -> JobRecord {
        self.engine
            .jobs()
            .await
            .into_iter()
            .find(|j| j.id() == id)
            .expect("no such job")
    }

    /// The engine's jobs.
    pub async fn engine_jobs(&self) -> Vec<JobRecord> {
        self.engine.jobs().await
    }

    /// Staged packages in the staging area.
    pub fn staged_files(&self) -> Vec<PathBuf> {
        let dir = self.state.join("staging/packages");
        std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

/// Plays stage 2 for every staged job: progress, Installing, Restarting, Verifying,
/// Completed with the package's version, pausing `step` between events. Returns the jobs it
/// completed through the channel.
pub fn drive_stage_two(
    engine: StageOneEngine,
    staged: mpsc::UnboundedReceiver<StagedJob>,
    step: Duration,
) -> mpsc::UnboundedReceiver<JobId> {
    drive_stage_two_failing_once(engine, staged, step, Vec::new())
}

/// As [`drive_stage_two`], but the first transfer of a package whose version is listed in
/// `fail_once` stops at 30 % with code 750 (the BMS stopped answering); a retry of it
/// completes.
pub fn drive_stage_two_failing_once(
    engine: StageOneEngine,
    mut staged: mpsc::UnboundedReceiver<StagedJob>,
    step: Duration,
    mut fail_once: Vec<String>,
) -> mpsc::UnboundedReceiver<JobId> {
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        'jobs: while let Some(job) = staged.recv().await {
            let target = job.package.package().version.clone();
            let fail = fail_once.iter().position(|v| *v == target.display);
            for p in (10..=100).step_by(10) {
                tokio::time::sleep(step).await;
                if p == 40
                    && let Some(i) = fail
                {
                    fail_once.remove(i);
                    let failure = bmsfw_core::job::JobFailure {
                        code: 750,
                        message: "the BMS did not answer within 1.5 s during the transfer".into(),
                        at: bmsfw_core::UnixMillis::now(),
                        battery_state: None,
                    };
                    if engine.apply(job.job, JobEvent::Failed(failure)).is_err() {
                        return;
                    }
                    continue 'jobs;
                }
                let progress = JobEvent::TransferProgress(Percent::new(p).unwrap());
                if engine.apply(job.job, progress).is_err() {
                    return; // the test ended and took the state directory with it
                }
            }
            for event in [
                JobEvent::InstallStarted,
                JobEvent::RestartStarted,
                JobEvent::VerifyStarted,
                JobEvent::Completed {
                    version_after: target.clone(),
                },
            ] {
                tokio::time::sleep(step).await;
                if engine.apply(job.job, event).is_err() {
                    return;
                }
            }
            let mut b = battery();
            b.firmware = Some(target);
            engine.set_battery(b);
            let _ = done_tx.send(job.job);
        }
    });
    done_rx
}

/// The portal's MQTT side with short timeouts.
pub fn portal_side(broker: &BrokerAddr, chunk_size: u32, window: usize) -> VrmSide {
    portal_side_with(portal_config(broker, chunk_size, window))
}

/// The settings of [`portal_side`], to change some before starting it.
pub fn portal_config(broker: &BrokerAddr, chunk_size: u32, window: usize) -> VrmConfig {
    let mut cfg = VrmConfig::new(broker.clone());
    cfg.client_id = format!("portal-{}", free_port());
    cfg.keepalive_interval = Duration::from_millis(500);
    cfg.reconnect_delay = Duration::from_millis(100);
    cfg.rpc_timeout = Duration::from_secs(5);
    cfg.chunk_size = chunk_size;
    cfg.upload_window = window;
    cfg.stall_timeout = Duration::from_millis(1500);
    cfg.signer = Some(portal_signer());
    if let Some(site) = secure_site(broker) {
        cfg.security = site.portal_security(broker);
    }
    cfg
}

/// The portal's MQTT side with `cfg`, for the test installation.
pub fn portal_side_with(cfg: VrmConfig) -> VrmSide {
    VrmSide::start(
        cfg,
        vec![(PortalId::new(PORTAL_ID).unwrap(), "Test site".into())],
    )
}

/// Waits until `check` holds for the portal's snapshot.
pub async fn until_portal<F: Fn(&bmsfw_portal::VrmSnapshot) -> bool>(
    portal: &VrmSide,
    what: &str,
    timeout: Duration,
    check: F,
) -> bmsfw_portal::VrmSnapshot {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changes = portal.changes();
    loop {
        let snap = portal.snapshot();
        if check(&snap) {
            return snap;
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            panic!(
                "timed out waiting for: {what}\nlast snapshot: {:#?}",
                portal.snapshot()
            );
        }
    }
}

/// Waits until `check` holds, polling every 5 ms.
pub async fn until<F: FnMut() -> bool>(what: &str, timeout: Duration, mut check: F) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A raw MQTT client that plays a hostile or careless VRM.
pub struct RawClient {
    pub client: rumqttc::AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

impl RawClient {
    pub async fn connect(broker: &BrokerAddr, filters: &[&str]) -> RawClient {
        RawClient::connect_as(broker, bmsfw_core::vrm::tls::PORTAL_USERNAME, filters).await
    }

    /// The same logging in as `user` on the secure link: the portal, or a GX by its
    /// portal id (a client playing the GX's side).
    pub async fn connect_as(broker: &BrokerAddr, user: &str, filters: &[&str]) -> RawClient {
        let mut opts = rumqttc::MqttOptions::new(
            format!("raw-{}", free_port()),
            broker.host.clone(),
            broker.port,
        );
        opts.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        // On the secure link it logs in as `user`: as the portal, the one identity the
        // broker lets publish to a GX, what it sends reaches the GX and tests the GX's own
        // checks.
        if let Some(site) = secure_site(broker) {
            site.security(broker, Some(site.credentials(user)))
                .apply(broker, &mut opts)
                .unwrap();
        }
        let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready = Some(ready_tx);
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if tx.send((p.topic, p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let filters: Vec<rumqttc::SubscribeFilter> = filters
            .iter()
            .map(|f| rumqttc::SubscribeFilter::new((*f).to_owned(), rumqttc::QoS::AtLeastOnce))
            .collect();
        client.subscribe_many(filters).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .expect("no SUBACK")
            .unwrap();
        RawClient { client, rx }
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }

    /// The next message on a topic starting with `prefix`, within `timeout`.
    pub async fn next(&mut self, prefix: &str, timeout: Duration) -> Option<(String, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((t, p))) if t.starts_with(prefix) => return Some((t, p)),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    /// The next reply on P/out that matches `keep`.
    pub async fn reply(
        &mut self,
        timeout: Duration,
        keep: impl Fn(&RpcResponse) -> bool,
    ) -> RpcResponse {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (_, payload) = self
                .next(&format!("P/{PORTAL_ID}/out"), left)
                .await
                .expect("no reply from the GX");
            let reply = RpcResponse::parse(&payload).expect("unreadable reply");
            if keep(&reply) {
                return reply;
            }
        }
    }

    /// Drops messages already received.
    pub fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

/// Every state of a successful update, in order.
pub fn all_states() -> Vec<bmsfw_vrm_wire::JobState> {
    use bmsfw_vrm_wire::JobState as S;
    vec![
        S::Uploading,
        S::Transferring,
        S::Installing,
        S::Restarting,
        S::Verifying,
        S::Completed,
    ]
}

pub fn is_state(job: &JobRecord, state: JobState) -> bool {
    job.state() == state
}

/// The portal's web server on a free loopback port, with an installer (Full control) and
/// a monitor (Monitor only).
pub struct PortalServer {
    pub url: String,
    pub vrm: VrmSide,
    /// The portal's store.
    pub store: bmsfw_portal::Store,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The folder of the store, when the portal made its own.
    _dir: Option<tempfile::TempDir>,
}

pub const INSTALLER: (&str, &str) = ("installer", "installer-password");
pub const MONITOR: (&str, &str) = ("monitor", "monitor-password");

impl PortalServer {
    pub async fn start(broker: &BrokerAddr, chunk_size: u32) -> PortalServer {
        PortalServer::start_with(portal_config(broker, chunk_size, 8)).await
    }

    /// The same with the MQTT side's settings `cfg` (see [`portal_config`]), keeping its
    /// store in a folder of its own that goes with it.
    pub async fn start_with(cfg: VrmConfig) -> PortalServer {
        let dir = tempfile::tempdir().unwrap();
        let mut portal = PortalServer::open(cfg, &dir.path().join("portal.sqlite"), None).await;
        portal._dir = Some(dir);
        portal
    }

    /// A portal keeping its store in `database` (what an earlier portal stored there comes
    /// back), listening on `listen` (else a free port). A portal restarted with the same
    /// `cfg` (its MQTT client id) takes up the broker session of the one before.
    pub async fn open(cfg: VrmConfig, database: &Path, listen: Option<SocketAddr>) -> PortalServer {
        use bmsfw_portal::auth::{AccessLevel, UserRecord, Users, hash_password};
        let users = tokio::task::spawn_blocking(|| {
            let user = |(name, password): (&str, &str), access| UserRecord {
                name: name.into(),
                password_hash: hash_password(password).unwrap(),
                access,
                installations: vec![PORTAL_ID.into()],
            };
            Users::new(vec![
                user(INSTALLER, AccessLevel::FullControl),
                user(MONITOR, AccessLevel::MonitorOnly),
            ])
            .unwrap()
        })
        .await
        .unwrap();
        let (store, mut restored) = bmsfw_portal::Store::open(database).await.unwrap();
        let vrm = VrmSide::start_with_store(
            cfg,
            vec![(PortalId::new(PORTAL_ID).unwrap(), "Test site".into())],
            store.clone(),
            std::mem::take(&mut restored.installations),
            std::mem::take(&mut restored.updates),
        );
        let settings = bmsfw_portal::web::WebSettings {
            session_lifetime: Duration::from_secs(3600),
            max_upload_bytes: 16 * 1024 * 1024,
            ..bmsfw_portal::web::WebSettings::default()
        };
        let app = bmsfw_portal::PortalApp::with_store(
            vrm.clone(),
            users,
            settings,
            store.clone(),
            restored.sessions,
            restored.pending,
        );
        let addr = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(bmsfw_portal::web::serve(listener, app));
        PortalServer {
            url,
            vrm,
            store,
            server,
            _dir: None,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.url
            .trim_start_matches("http://")
            .parse()
            .expect("the portal's address")
    }

    /// Stops it as a killed process would stop: it no longer listens, its MQTT connection
    /// drops without a goodbye. Its store then writes what it had queued and closes.
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        self.vrm.stop();
        self.store.close().await;
    }
}

/// An HTTP client with its own cookie jar.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The header every POST to the portal needs.
pub const CSRF_HEADER: (&str, &str) = ("X-Requested-With", "bmsfw");

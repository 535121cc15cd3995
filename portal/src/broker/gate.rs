//! The gate in front of rumqttd: TLS, logins, topic rules (see the parent module).

use super::{GATE_USER, MAX_PAYLOAD, RECHECK};
use crate::acl::{PORTAL_USERNAME, Role};
use crate::passwd::{PasswordFile, PasswordHash};
use bmsfw_core::vrm::tls::Secret;
use bytes::BytesMut;
use rumqttc::mqttbytes::{self, Protocol};
use rumqttc::{ConnAck, ConnectReturnCode, Login, Packet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Time a client has for its TLS handshake and its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to reach rumqttd.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections at once.
const MAX_CONNECTIONS: usize = 1024;
/// Largest packet a client may send.
const MAX_PACKET: usize = MAX_PAYLOAD + 64 * 1024;

pub(super) struct Gate {
    pub backend: SocketAddr,
    pub backend_secret: String,
    pub acceptor: Option<tokio_rustls::TlsAcceptor>,
    pub users: Users,
}

/// The logins: the portal's own, and the password file's, re-read when it changes.
pub(super) struct Users {
    file: Option<PathBuf>,
    portal: Option<PasswordHash>,
    cache: Mutex<Cache>,
}

struct Cache {
    /// (modified, length, inode) of the file last read.
    stamp: Option<(Option<SystemTime>, u64, u64)>,
    /// What it held; `None`: unreadable or invalid (no GX may log in).
    entries: Option<PasswordFile>,
    /// When the file was last looked at.
    looked: Option<Instant>,
}

impl Users {
    pub fn new(file: Option<PathBuf>, portal: Option<Secret>) -> Users {
        Users {
            file,
            portal: portal.map(|s| PasswordHash::new(s.expose())),
            cache: Mutex::new(Cache {
                stamp: None,
                entries: Some(PasswordFile::default()),
                looked: None,
            }),
        }
    }

    /// The password file as it is now (looked at most once a second).
    fn entries(&self) -> Option<PasswordFile> {
        let Some(path) = &self.file else {
            return Some(PasswordFile::default());
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache
            .looked
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return cache.entries.clone();
        }
        cache.looked = Some(Instant::now());
        use std::os::unix::fs::MetadataExt;
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().ok(), m.len(), m.ino()));
        if cache.stamp.is_some() && cache.stamp == stamp {
            return cache.entries.clone();
        }
        cache.stamp = stamp;
        cache.entries = match PasswordFile::load(path) {
            Ok(f) => Some(f),
            Err(e) => {
                // Fail closed: a damaged file lets no GX in, rather than an old list.
                tracing::error!("password file refused, no GX may log in: {e}");
                None
            }
        };
        cache.entries.clone()
    }

    /// The role of a login, with the entry it matched.
    fn authenticate(&self, user: &str, password: &str) -> Option<(Role, Option<PasswordHash>)> {
        let role = Role::of(user)?;
        if user == PORTAL_USERNAME
            && let Some(portal) = &self.portal
            && portal.verify(password)
        {
            return Some((role, None));
        }
        let entries = self.entries()?;
        let entry = entries.get(user)?;
        entry.verify(password).then(|| (role, Some(entry.clone())))
    }

    /// Whether the entry a connection logged in with is still the user's.
    fn still_valid(&self, role: &Role, entry: Option<&PasswordHash>) -> bool {
        let Some(entry) = entry else {
            return true; // the portal's own identity lives as long as the process
        };
        self.entries()
            .is_some_and(|f| f.get(role.username()) == Some(entry))
    }
}

pub(super) async fn serve(gate: Arc<Gate>, listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "embedded MQTT broker gate cannot listen");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "embedded MQTT broker: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%peer, "embedded MQTT broker: {MAX_CONNECTIONS} connections, refusing");
            continue;
        };
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            let _slot = slot;
            match gate.connection(stream).await {
                Ok(who) => tracing::debug!(%peer, who, "MQTT connection ended"),
                Err(why) => tracing::info!(%peer, "MQTT connection closed: {why}"),
            }
        });
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Reads one whole packet: its bytes and what they say.
async fn read_packet<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
) -> Result<(BytesMut, Packet), String> {
    loop {
        match mqttbytes::check(buf.iter(), MAX_PACKET) {
            Ok(header) => {
                let frame = buf.split_to(header.frame_length());
                let packet = Packet::read(&mut frame.clone(), MAX_PACKET)
                    .map_err(|e| format!("malformed packet: {e}"))?;
                return Ok((frame, packet));
            }
            Err(mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(format!("malformed packet: {e}")),
        }
        let n = r.read_buf(buf).await.map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("closed by the client".into());
        }
    }
}

async fn refuse<W: AsyncWrite + Unpin>(w: &mut W, code: ConnectReturnCode) {
    let mut out = BytesMut::new();
    if (ConnAck {
        session_present: false,
        code,
    })
    .write(&mut out)
    .is_ok()
    {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = w.write_all(&out).await;
            let _ = w.flush().await;
            let _ = w.shutdown().await;
        })
        .await;
    }
}

impl Gate {
    /// One client, from its handshake to its end. Ok: the user name, at a normal end.
    async fn connection(&self, tcp: TcpStream) -> Result<String, String> {
        let _ = tcp.set_nodelay(true);
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        let mut client: Box<dyn Stream> = match &self.acceptor {
            Some(a) => Box::new(
                tokio::time::timeout_at(deadline, a.accept(tcp))
                    .await
                    .map_err(|_| "no TLS handshake in time".to_owned())?
                    .map_err(|e| format!("TLS handshake: {e}"))?,
            ),
            None => Box::new(tcp),
        };
        let mut buf = BytesMut::with_capacity(4096);
        let (_, first) = tokio::time::timeout_at(deadline, read_packet(&mut client, &mut buf))
            .await
            .map_err(|_| "no CONNECT in time".to_owned())??;
        let Packet::Connect(mut connect) = first else {
            return Err("the first packet is not CONNECT".into());
        };
        if connect.protocol != Protocol::V4 {
            refuse(&mut client, ConnectReturnCode::RefusedProtocolVersion).await;
            return Err("not MQTT 3.1.1".into());
        }
        let login = connect.login.take();
        let user = login.as_ref().map(|l| l.username.clone());
        let Some((role, entry)) =
            login.and_then(|l| self.users.authenticate(&l.username, &l.password))
        else {
            refuse(&mut client, ConnectReturnCode::BadUserNamePassword).await;
            return Err(match user {
                Some(u) => format!("login refused for user {:?}", clip(&u)),
                None => "login refused: no credentials".into(),
            });
        };
        if let Some(will) = &connect.last_will
            && !role.may_publish(&will.topic)
        {
            refuse(&mut client, ConnectReturnCode::NotAuthorized).await;
            return Err(format!(
                "{}: last will on {:?} refused",
                role.username(),
                clip(&will.topic)
            ));
        }
        connect.client_id = format!("{}:{}", role.username(), connect.client_id);
        connect.login = Some(Login::new(GATE_USER, self.backend_secret.clone()));
        let backend = tokio::time::timeout(BACKEND_TIMEOUT, TcpStream::connect(self.backend))
            .await
            .map_err(|_| "the broker did not answer in time".to_owned())?
            .map_err(|e| format!("reaching the broker: {e}"))?;
        let _ = backend.set_nodelay(true);
        let mut out = BytesMut::new();
        connect
            .write(&mut out)
            .map_err(|e| format!("CONNECT: {e}"))?;
        let (mut br, mut bw) = backend.into_split();
        bw.write_all(&out)
            .await
            .map_err(|e| format!("writing to the broker: {e}"))?;
        let (mut cr, mut cw) = tokio::io::split(client);
        let name = role.username().to_owned();
        let down = async {
            let _ = tokio::io::copy(&mut br, &mut cw).await;
            let _ = cw.shutdown().await;
        };
        let up = async {
            loop {
                let (frame, packet) = read_packet(&mut cr, &mut buf).await?;
                match &packet {
                    Packet::Connect(_) => {
                        return Err::<String, String>("a second CONNECT".to_owned());
                    }
                    Packet::Publish(p) if !role.may_publish(&p.topic) => {
                        return Err(format!("{name}: publish on {:?} refused", clip(&p.topic)));
                    }
                    Packet::Subscribe(s) => {
                        if let Some(f) = s.filters.iter().find(|f| !role.may_subscribe(&f.path)) {
                            return Err(format!(
                                "{name}: subscription to {:?} refused",
                                clip(&f.path)
                            ));
                        }
                    }
                    _ => {}
                }
                bw.write_all(&frame)
                    .await
                    .map_err(|e| format!("writing to the broker: {e}"))?;
            }
        };
        let watch = async {
            loop {
                tokio::time::sleep(RECHECK).await;
                if !self.users.still_valid(&role, entry.as_ref()) {
                    return format!("{name}: credentials revoked or replaced");
                }
            }
        };
        tokio::select! {
            () = down => Ok(name.clone()),
            r = up => r,
            why = watch => Err(why),
        }
    }
}

/// At most 80 characters of a client's text, for a log line.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

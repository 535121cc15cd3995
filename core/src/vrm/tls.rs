//! The security of an MQTT connection to the VRM broker: TLS with the broker's certificate
//! verified against a configured CA, and the credentials the client logs in with.
//!
//! The rules (docs/security.md):
//! - `mqtts://` verifies the broker's certificate against the CA of the configuration (never
//!   the system's store: the broker is ours, and a certificate any public CA signed for
//!   the name is not enough);
//! - plain `mqtt://` is accepted only towards loopback, or with `insecure = true`, which
//!   the daemon logs at error level at every start;
//! - the password is held in a [`Secret`], whose `Debug` prints nothing of it and whose
//!   memory is zeroed when dropped, and is read from a credentials file that only its
//!   owner may read.

use bmsfw_vrm_wire::BrokerAddr;
use rumqttc::{ConnectReturnCode, ConnectionError, MqttOptions, TlsConfiguration, Transport};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The MQTT user name of the portal. It cannot be a GX's (a portal id has letters, digits,
/// `_` and `-` only), so the broker's rules tell the two apart by name alone.
pub const PORTAL_USERNAME: &str = "vrm.portal";

/// Largest CA file read.
const MAX_CA_FILE: u64 = 1024 * 1024;
/// Largest credentials file read.
const MAX_CREDENTIALS_FILE: u64 = 16 * 1024;
/// Longest password accepted (MQTT allows 65535 bytes; ours are 43).
const MAX_PASSWORD: usize = 1024;

/// A secret: its `Debug` says only that it is one, and its memory is zeroed when it is
/// dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(s.into()))
    }

    /// The secret itself, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A user name and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttCredentials {
    /// The user name: the GX's portal id, or [`PORTAL_USERNAME`].
    pub username: String,
    /// The password.
    pub password: Secret,
}

impl fmt::Debug for MqttCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttCredentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// The credentials file, as `bmsfw portal provision` writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    username: String,
    password: String,
}

impl MqttCredentials {
    /// Reads a credentials file (`username = "..."`, `password = "..."`). The file must
    /// be a regular file that neither its group nor others may read or write.
    pub fn load(path: &Path) -> Result<MqttCredentials, SecurityError> {
        let bad = |reason: String| SecurityError::Credentials {
            path: path.to_owned(),
            reason,
        };
        // The file's text holds the password too: zeroed once parsed.
        let text = Zeroizing::new(read_limited(path, MAX_CREDENTIALS_FILE, true).map_err(bad)?);
        // The error of the TOML parser may quote the line: never the password's.
        let file: CredentialsFile = toml::from_str(&text).map_err(|e| {
            bad(match e.span() {
                Some(span) => format!(
                    "not a credentials file (near byte {}; expected username and password)",
                    span.start
                ),
                None => "not a credentials file (expected username and password)".into(),
            })
        })?;
        MqttCredentials::new(file.username, Secret::new(file.password)).map_err(bad)
    }

    /// Checks a user name and password.
    pub fn new(username: String, password: Secret) -> Result<MqttCredentials, String> {
        if username.is_empty()
            || username.len() > 64
            || !username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(
                "the username must be 1 to 64 ASCII letters, digits, '-', '_' or '.'".to_owned(),
            );
        }
        let p = password.expose();
        if p.len() < 16 || p.len() > MAX_PASSWORD || p.chars().any(|c| c.is_control()) {
            return Err(format!(
                "the password must be 16 to {MAX_PASSWORD} characters without control characters"
            ));
        }
        Ok(MqttCredentials { username, password })
    }
}

/// What the configuration says about a connection's security.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecuritySettings {
    /// The CA certificates (PEM) the broker's certificate must chain to. Required with
    /// `mqtts://`.
    pub ca: Option<PathBuf>,
    /// The credentials file.
    pub credentials: Option<PathBuf>,
    /// Plain `mqtt://` to a host that is not loopback.
    pub insecure: bool,
}

/// Why a connection's security could not be set up. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Plain MQTT to a host that is not loopback, without `insecure = true`.
    #[error(
        "{broker}: plain MQTT to a host that is not loopback is refused; use mqtts:// with a CA \
         (or set insecure = true to accept an unencrypted, unauthenticated link)"
    )]
    PlainNotLoopback {
        /// The broker.
        broker: BrokerAddr,
    },
    /// `mqtts://` without a CA.
    #[error(
        "{broker}: mqtts:// needs the CA certificate that signed the broker's certificate (ca = \"...\")"
    )]
    NoCa {
        /// The broker.
        broker: BrokerAddr,
    },
    /// The CA file is unusable.
    #[error("CA file {}: {reason}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The credentials file is unusable.
    #[error("credentials file {}: {reason}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// How one client connects: TLS or not, credentials or not. Cheap to clone.
#[derive(Clone, Default)]
pub struct MqttSecurity {
    tls: Option<Arc<rustls::ClientConfig>>,
    credentials: Option<MqttCredentials>,
    insecure: bool,
}

impl fmt::Debug for MqttSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttSecurity")
            .field("tls", &self.tls.is_some())
            .field(
                "credentials",
                &self.credentials.as_ref().map(|c| c.username.as_str()),
            )
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl MqttSecurity {
    /// From the configuration, for `broker`: checks the plain-MQTT rule, loads the CA and
    /// the credentials.
    pub fn from_settings(
        broker: &BrokerAddr,
        settings: &SecuritySettings,
    ) -> Result<MqttSecurity, SecurityError> {
        let credentials = settings
            .credentials
            .as_deref()
            .map(MqttCredentials::load)
            .transpose()?;
        let tls = match (&settings.ca, broker.tls) {
            (Some(ca), true) => Some(client_config(&load_ca(ca)?)),
            (None, true) => {
                return Err(SecurityError::NoCa {
                    broker: broker.clone(),
                });
            }
            (_, false) => None,
        };
        MqttSecurity {
            tls,
            credentials,
            insecure: settings.insecure,
        }
        .checked(broker)
    }

    /// With the CA certificates given as DER, and these credentials.
    pub fn with_ca_der(
        broker: &BrokerAddr,
        ca: &[Vec<u8>],
        credentials: Option<MqttCredentials>,
    ) -> Result<MqttSecurity, SecurityError> {
        let certs: Vec<_> = ca
            .iter()
            .map(|d| rustls::pki_types::CertificateDer::from(d.clone()))
            .collect();
        let tls = broker.tls.then(|| client_config(&certs));
        if broker.tls && certs.is_empty() {
            return Err(SecurityError::NoCa {
                broker: broker.clone(),
            });
        }
        MqttSecurity {
            tls,
            credentials,
            insecure: false,
        }
        .checked(broker)
    }

    /// TLS that accepts exactly the server certificate `pinned` (DER), whatever its
    /// name: the portal reaching its own embedded broker, whose certificate it holds.
    pub fn pinned(
        broker: &BrokerAddr,
        pinned: Vec<u8>,
        credentials: Option<MqttCredentials>,
    ) -> Result<MqttSecurity, SecurityError> {
        let provider = crypto_provider();
        let verifier = Arc::new(Pinned {
            cert: rustls::pki_types::CertificateDer::from(pinned),
            provider: Arc::clone(&provider),
        });
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        MqttSecurity {
            tls: broker.tls.then(|| Arc::new(config)),
            credentials,
            insecure: false,
        }
        .checked(broker)
    }

    /// Plain MQTT with these credentials (loopback only unless `insecure`).
    pub fn plain(
        broker: &BrokerAddr,
        credentials: Option<MqttCredentials>,
        insecure: bool,
    ) -> Result<MqttSecurity, SecurityError> {
        MqttSecurity {
            tls: None,
            credentials,
            insecure,
        }
        .checked(broker)
    }

    fn checked(self, broker: &BrokerAddr) -> Result<MqttSecurity, SecurityError> {
        if broker.tls && self.tls.is_none() {
            return Err(SecurityError::NoCa {
                broker: broker.clone(),
            });
        }
        if !broker.tls && !broker.is_loopback() && !self.insecure {
            return Err(SecurityError::PlainNotLoopback {
                broker: broker.clone(),
            });
        }
        Ok(self)
    }

    /// The credentials, if any.
    pub fn credentials(&self) -> Option<&MqttCredentials> {
        self.credentials.as_ref()
    }

    /// Whether `insecure = true` was given.
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// Says loudly, at every start, what an insecure link gives away. Returns whether it
    /// had to.
    pub fn warn_if_insecure(&self, broker: &BrokerAddr, who: &str) -> bool {
        if broker.tls {
            return false;
        }
        if self.insecure && !broker.is_loopback() {
            tracing::error!(
                %broker,
                "INSECURE: {who} connects to the MQTT broker WITHOUT TLS (insecure = true): anyone \
                 on the path can read its traffic, steal its credentials and inject messages"
            );
            return true;
        }
        false
    }

    /// Sets TLS and credentials on `options`. Refuses what [`MqttSecurity::checked`]
    /// refuses (the settings may have come from elsewhere than `from_settings`).
    pub fn apply(
        &self,
        broker: &BrokerAddr,
        options: &mut MqttOptions,
    ) -> Result<(), SecurityError> {
        let me = self.clone().checked(broker)?;
        if let Some(tls) = &me.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::clone(tls),
            )));
        }
        if let Some(c) = &me.credentials {
            options.set_credentials(c.username.clone(), c.password.expose().to_owned());
        }
        Ok(())
    }
}

fn client_config(
    roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        // A certificate that does not parse is skipped here; load_ca refuses a file
        // without a usable one.
        let _ = store.add(cert.clone());
    }
    let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts one certificate, byte for byte; the handshake's signature is still checked.
#[derive(Debug)]
struct Pinned {
    cert: rustls::pki_types::CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The cryptography of every TLS connection of bmsfw: *ring* (builds with a C compiler
/// alone, as rcgen does). Its post-quantum key exchange is missing; the link's secrets are
/// short-lived and rotated by provisioning.
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads at most `limit` bytes of a regular file; with `private`, refuses a file that
/// its group or others may access.
fn read_limited(path: &Path, limit: u64, private: bool) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if private {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "mode {mode:o} lets other users read it; chmod 600 (it holds a secret)"
            ));
        }
    }
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read as UTF-8 text: {e}"))?;
    if text.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    Ok(text)
}

/// The certificates of a PEM file (at least one).
pub fn load_ca(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, SecurityError> {
    use rustls::pki_types::pem::PemObject;
    let bad = |reason: String| SecurityError::Ca {
        path: path.to_owned(),
        reason,
    };
    let text = read_limited(path, MAX_CA_FILE, false).map_err(bad)?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            "holds no certificate (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let mut store = rustls::RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err(bad(format!(
            "none of its {ignored} certificate(s) is usable as a CA"
        )));
    }
    Ok(certs)
}

/// Why a connection attempt to `broker` failed, in words an operator can act on: a
/// certificate problem names the host and what is wrong with the certificate, a refused
/// login says so.
pub fn describe_connection_error(broker: &BrokerAddr, e: &ConnectionError) -> String {
    let host = &broker.host;
    match e {
        ConnectionError::Tls(tls) => {
            let inner: Option<&rustls::Error> = match tls {
                rumqttc::TlsError::TLS(r) => Some(r),
                rumqttc::TlsError::Io(io) => io
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
                _ => None,
            };
            match inner {
                Some(rustls::Error::InvalidCertificate(cert)) => format!(
                    "TLS: the certificate of {host} is refused: {}",
                    describe_certificate_error(cert, host)
                ),
                Some(other) => format!("TLS with {host} failed: {other}"),
                None => format!("TLS with {host} failed: {tls}"),
            }
        }
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => format!(
            "the broker {broker} refused the credentials (wrong or revoked password? provision \
             the GX again)"
        ),
        other => format!("{broker}: {other}"),
    }
}

fn describe_certificate_error(e: &rustls::CertificateError, host: &str) -> String {
    use rustls::CertificateError as C;
    match e {
        C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".into(),
        C::UnknownIssuer => "it is not signed by the configured CA (unknown issuer)".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            format!("it is not valid for the name {host:?} (wrong host name)")
        }
        C::Revoked => "it has been revoked".into(),
        C::BadSignature => "its signature is invalid".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_mqtt_is_loopback_only_unless_insecure() {
        let lan = BrokerAddr::new("192.0.2.7", 1883);
        let err = MqttSecurity::plain(&lan, None, false).unwrap_err();
        assert!(err.to_string().contains("192.0.2.7"), "{err}");
        assert!(matches!(err, SecurityError::PlainNotLoopback { .. }));
        assert!(MqttSecurity::plain(&lan, None, true).unwrap().insecure());
        assert!(MqttSecurity::plain(&BrokerAddr::new("127.0.0.1", 1), None, false).is_ok());
        assert!(MqttSecurity::plain(&BrokerAddr::new("localhost", 1), None, false).is_ok());
        // A default (no TLS) security applied to a remote plain address is refused too.
        let mut o = MqttOptions::new("x", "192.0.2.7", 1883);
        assert!(MqttSecurity::default().apply(&lan, &mut o).is_err());
    }

    #[test]
    fn mqtts_needs_a_ca() {
        let b = BrokerAddr::tls("vrm.example", 8883);
        let err = MqttSecurity::from_settings(&b, &SecuritySettings::default()).unwrap_err();
        assert!(matches!(err, SecurityError::NoCa { .. }), "{err}");
        let mut o = MqttOptions::new("x", "vrm.example", 8883);
        assert!(MqttSecurity::default().apply(&b, &mut o).is_err());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = MqttCredentials::new("gx1".into(), Secret::new("hunter2-hunter2-hunter2")).unwrap();
        let s =
            MqttSecurity::plain(&BrokerAddr::new("127.0.0.1", 1), Some(c.clone()), false).unwrap();
        for text in [format!("{c:?}"), format!("{s:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn credentials_files_are_checked_as_hostile_input() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(
            "username = \"gx1\"\npassword = \"0123456789abcdef0123\"\n",
            0o600,
        );
        let c = MqttCredentials::load(&path).unwrap();
        assert_eq!(c.username, "gx1");
        write(
            "username = \"gx1\"\npassword = \"0123456789abcdef0123\"\n",
            0o644,
        );
        let e = MqttCredentials::load(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        for bad in [
            "username = \"gx1\"\npassword = \"short\"\n",
            "username = \"g x\"\npassword = \"0123456789abcdef0123\"\n",
            "username = \"gx1\"\npassword = \"0123456789abcdef0123\"\nextra = 1\n",
            "password = \"0123456789abcdef0123-secret-in-error\n",
            "\u{0}\u{1}",
        ] {
            write(bad, 0o600);
            let e = MqttCredentials::load(&path).unwrap_err().to_string();
            assert!(
                !e.contains("secret-in-error") && !e.contains("0123456789"),
                "{e}"
            );
        }
        std::fs::write(&path, vec![b'a'; 20_000]).unwrap();
        assert!(MqttCredentials::load(&path).is_err());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        assert!(load_ca(&path).is_err());
        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(load_ca(&path).is_err());
    }
}

//! Certificates made at run time (rcgen): a CA and the broker's certificate for the demo
//! and the tests, and the bad certificates the tests need (another CA, expired, another
//! host name). Keys are ECDSA P-256.

use crate::broker::ServerTls;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused.
    #[error("making a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From yesterday for `days` days.
    From(i64),
    /// Expired yesterday.
    Expired,
}

fn dates(params: &mut CertificateParams, validity: Validity) {
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    match validity {
        Validity::From(days) => {
            params.not_before = now - day;
            params.not_after = now + time::Duration::days(days);
        }
        Validity::Expired => {
            params.not_before = now - day * 30;
            params.not_after = now - day;
        }
    }
}

/// A certificate authority.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl Ca {
    /// A new CA named `name`, valid for ten years.
    pub fn new(name: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        dates(&mut params, Validity::From(3650));
        let cert = params.self_signed(&key)?;
        Ok(Ca { params, key, cert })
    }

    /// The CA's certificate (PEM).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA's certificate (DER).
    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// A server certificate for `names` (host names or IP addresses).
    pub fn server(&self, names: &[&str], validity: Validity) -> Result<Leaf, PkiError> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("bmsfw"),
        );
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        dates(&mut params, validity);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Leaf {
            chain: vec![cert.der().clone(), self.cert.der().clone()],
            chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes the CA's certificate.
    pub fn write(&self, path: &Path) -> Result<(), PkiError> {
        std::fs::write(path, self.pem()).map_err(|source| PkiError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

/// A certificate with its key.
pub struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    chain_pem: String,
    key_der: Vec<u8>,
    key_pem: String,
}

impl Leaf {
    /// For the embedded broker.
    pub fn server_tls(&self) -> ServerTls {
        ServerTls {
            chain: self.chain.clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
        }
    }

    /// Writes the chain (PEM, the certificate then its CA) and the key (PEM, mode 0600).
    pub fn write(&self, cert: &Path, key: &Path) -> Result<(), PkiError> {
        std::fs::write(cert, &self.chain_pem).map_err(|source| PkiError::Write {
            path: cert.display().to_string(),
            source,
        })?;
        crate::passwd::write_private(key, self.key_pem.as_bytes()).map_err(|source| {
            PkiError::Write {
                path: key.display().to_string(),
                source,
            }
        })
    }
}

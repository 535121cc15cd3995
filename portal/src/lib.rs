//! The VRM stand-in: installations and their device lists built from what each GX publishes,
//! remote firmware updates (upload, Update, live progress, event log, diagnostics, retry),
//! and the installer's web UI and HTTP API, with users and access levels.
//!
//! - [`vrm`]: the MQTT side ([`VrmSide`]): keepalives, the device lists ([`model`]), update
//!   commands and the chunked upload of packages ([`upload`]), replies, and whether each GX
//!   is online ([`presence`]);
//! - [`web`]: the UI and HTTP API (axum), with [`auth`]: users, hashed passwords and
//!   sessions, "Full control" and "Monitor only";
//! - [`store`]: the portal's SQLite database and uploaded files, so that a restart loses
//!   nothing (sessions, last contact, updates, event logs, diagnostics of failures);
//! - [`config`]: the `portal.toml` file;
//! - [`signer`]: the portal's Ed25519 key that signs every update and cancel command;
//! - [`broker`]: the embedded MQTT broker used when no external one is given, behind a gate
//!   that enforces TLS, the GXs' credentials ([`passwd`]) and the topic rules ([`acl`]);
//!   [`provision`] gives a GX its credentials, [`pki`] makes certificates for tests and the
//!   demo.
#![forbid(unsafe_code)]

pub mod acl;
pub mod auth;
pub mod broker;
pub mod config;
pub mod model;
pub mod passwd;
pub mod pki;
pub mod preflight;
pub mod presence;
pub mod provision;
pub mod signer;
pub mod store;
pub mod upload;
pub mod vrm;
pub mod web;

pub use broker::EmbeddedBroker;
pub use store::{Store, StoreError};
pub use vrm::{StoredFile, UpdateOrder, UpdateView, VrmConfig, VrmError, VrmSide, VrmSnapshot};
pub use web::PortalApp;

//! The VRM stand-in: the installer's web UI and HTTP API.
#![forbid(unsafe_code)]

//! Support of the aurora end-to-end tests.

pub mod harness;

//! The simulated world bmsfw is tested and demonstrated in.
#![forbid(unsafe_code)]

pub mod battery;
pub mod site;

#[cfg(test)]
mod site_tests;

//! The control plane's domain: pure types and rules, no I/O and no clock.
//!
//! Everything here takes `now` as an argument, so the state machine, the sweep and
//! the fingerprint policy are tested without sleeping (STYLE.md "No ambient clock").

pub mod audit;
pub mod ids;
pub mod license;
pub mod password;
pub mod settings;
pub mod user;

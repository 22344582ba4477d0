//! The appliance agent: what runs on the customer's box (DESIGN.md "Appliance").
//!
//! - [`fingerprint`]: the box's hardware components, hashed and salted.
//! - [`store`]: the local state in sled, one checksummed record.
//! - [`eval`]: the state as a pure function of that record and the time, and the
//!   banners.
//! - [`agent`]: activation (online and air-gapped), heartbeats, clock checks.
//! - [`transport`]: HTTPS to the control plane.
//! - [`run`]: the heartbeat loop, the status socket and enforcement.
//! - [`clock`]: the injected clock.
//!
//! A Rust product embeds an [`agent::Agent`] and watches [`agent::Agent::watch`].
//! This crate never depends on the control plane: what both must agree on is in
//! `keys`.

#![forbid(unsafe_code)]

pub mod agent;
pub mod clock;
pub mod eval;
pub mod fingerprint;
pub mod run;
pub mod store;
pub mod transport;

//! The cross-crate tests, one binary.
//!
//! - `lifecycle`: an appliance agent against a real control plane on loopback:
//!   activation, heartbeats, revoke and grace, expiry, reinstate, regenerate,
//!   rebind, suspend and restore, idempotent activation, clone detection.
//! - `rotation`: signing-key rotation and revocation across the real API.
//! - `faults`: what a network or a man in the middle can do between the agent and
//!   the control plane (unsigned errors, garbage, replays, forged tokens), and the
//!   run loop supervising and stopping the licensed child.
//! - `corruption`: the appliance's store truncated, bit-flipped, zeroed, padded
//!   or deleted over many seeds: never more time than the last verified lease
//!   allows, and the way back (support unbinds, activate again online).
//! - `fuzz_smoke`: the bounded CI run of the fuzz targets (`fuzz/`): the
//!   committed corpus and a few thousand mutations of it.
//! - `tls`: the appliance and the control plane over rustls with a pinned test CA.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod corruption;
mod faults;
mod fuzz_smoke;
mod lifecycle;
mod rotation;
mod tls;

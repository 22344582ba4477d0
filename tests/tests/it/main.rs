//! The cross-crate tests, one binary.
//!
//! - `lifecycle`: an appliance agent against a real control plane on loopback:
//!   activation, heartbeats, revoke and grace, expiry, reinstate, regenerate,
//!   rebind, suspend and restore, idempotent activation, clone detection.
//! - `replicas`: issue 9's two `control-plane serve` replicas on one PostgreSQL
//!   database, appliances heartbeating through both while admin changes go to
//!   either, one replica SIGKILLed mid-load and restarted: no acknowledged
//!   change lost, no `active` lease after a revoke's acknowledgement.
//! - `rotation`: signing-key rotation and revocation across the real API.
//! - `faults`: what a network or a man in the middle can do between the agent and
//!   the control plane (unsigned errors, garbage, replays, forged tokens), and the
//!   run loop supervising and stopping the licensed child.
//! - `corruption`: the appliance's store truncated, bit-flipped, zeroed, padded
//!   or deleted over many seeds: never more time than the last verified lease
//!   allows, and the way back (support unbinds, activate again online).
//! - `mitm`: issue 6's scenario 5 on the real binaries, with the fault proxy
//!   (`e2e::fault_proxy`) between `appliance run` and `control-plane serve`:
//!   unsigned errors, resets, drops, truncations, delays, replays and forged
//!   denials never lock the appliance inside its lease; a replayed older lease
//!   and a replayed genuine denial are refused; a genuine signed denial locks.
//! - `migrate`: issue 9's `control-plane migrate` on the real binaries: a
//!   populated sled installation copied into a fresh PostgreSQL database and
//!   served from it (needs `LICENSING_TEST_POSTGRES`, `e2e::postgres`).
//! - `fuzz_smoke`: the bounded CI run of the fuzz targets (`fuzz/`): the
//!   committed corpus and a few thousand mutations of it.
//! - `tls`: the appliance and the control plane over rustls with a pinned test CA.
//! - `console`: the web console (`/licensing`) in headless Chromium, driven by
//!   `tests/browser/console.mjs` against the real `control-plane` binary: every
//!   role's login, a license's whole life through the forms, permissions, CSRF,
//!   and the screenshots the docs show.
//! - `scenarios`: issue 6's scenarios on the real binaries as separate processes
//!   (`e2e::procs`), days passing with libfaketime: lifecycle, offline, clock,
//!   regenerate and rebind, clone, and SIGKILL of `appliance run` mid-heartbeat.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod console;
mod corruption;
mod faults;
mod fuzz_smoke;
mod lifecycle;
mod migrate;
mod mitm;
mod replicas;
mod rotation;
mod scenarios;
mod tls;

//! The `keys` integration tests, one binary (STYLE.md "Tests").
//!
//! - `support`: fixed test keys and a raw JWS builder independent of `keys::sign`.
//! - `vectors`: golden vectors under `keys/tests/vectors/`, regenerated with
//!   `UPDATE_VECTORS=1` and otherwise checked byte for byte; valid ones verify to
//!   their recorded claims, hostile ones fail with their recorded error.
//! - `mutations`: every single-byte flip and every truncation of a valid lease fails.
//! - `props`: property tests of sign/verify round-trips and mutations.
//! - `interop`: the `jsonwebtoken` crate verifies our lease with our JWKS.
//! - `cli`: the `keys` binary end to end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod interop;
mod mutations;
mod props;
mod support;
mod vectors;

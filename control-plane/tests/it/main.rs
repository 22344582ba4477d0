//! The control plane's integration tests, one binary (STYLE.md "Tests").
//!
//! - `cli`: the binary's offline commands (init once, KEK beside the data dir, audit verify).
//! - `support`: an in-process control plane on a temp dir with a manual clock,
//!   users of every role, a simulated appliance, and `call` (router `oneshot`).
//! - `routes`: every endpoint's happy path and refusals.
//! - `permissions`: every route × every kind of caller → the exact status.
//! - `sweep`: a mixed fleet swept twice: exact transitions, then nothing.
//! - `openapi`: the generated OpenAPI document matches docs/openapi.json and
//!   lists exactly the routes the router serves.
//! - `observability`: `/metrics` moves with heartbeats, clones, revokes and
//!   sweeps; `/readyz` tells ready from not ready.
//! - `tidy`: no route is added outside `OpenApiRouter` (so none escapes the document).
//! - `secrets_at_rest`: no secret appears in plaintext in the data directory.
//! - `durability`: the real binary killed with SIGKILL under load loses nothing acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod durability;
mod observability;
mod openapi;
mod permissions;
mod routes;
mod secrets_at_rest;
mod support;
mod sweep;
mod tidy;

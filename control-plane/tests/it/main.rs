//! The control plane's integration tests, one binary (STYLE.md "Tests").
//!
//! - `cli`: the binary's offline commands (init once, KEK beside the data dir, audit verify).
//! - `admin_cli`: the binary's client commands against the binary serving on port 0:
//!   every admin command's JSON answer, the human tables, and the exit codes.
//! - `support`: an in-process control plane on a temp dir with a manual clock,
//!   users of every role, a simulated appliance, and `call` (router `oneshot`).
//! - `console`: the web console through the router: sign-in, lockout, sessions, CSRF,
//!   each role's pages, the customer's banners, keys shown once.
//! - `routes`: every endpoint's happy path and refusals.
//! - `rate_limits`: activations per IP, heartbeats per license, failed authentications per IP
//!   (API tokens and console sign-ins).
//! - `permissions`: every route × every kind of caller → the exact status.
//! - `sweep`: a mixed fleet swept twice: exact transitions, then nothing; a scan
//!   that calls everything due moves only what the full records say is due;
//!   two replicas sweeping one PostgreSQL database at once move each license once.
//! - `store_conformance`: every `Store` operation, atomicity, racing writers,
//!   durability across a reopen and audit verification, on sled and PostgreSQL.
//!
//! `routes`, `sweep` and `store_conformance` run each test on both stores
//! (`support::on_each_store!`); the PostgreSQL half needs a server
//! (`LICENSING_TEST_POSTGRES`, which `./scripts/test` sets) and fails without
//! one unless `LICENSING_SKIP_POSTGRES=1`.
//! - `openapi`: the generated OpenAPI document matches docs/openapi.json and
//!   lists exactly the routes the router serves.
//! - `observability`: `/metrics` moves with heartbeats, clones, revokes and
//!   sweeps; `/readyz` tells ready from not ready.
//! - `tidy`: no route is added outside `OpenApiRouter` (so none escapes the document).
//! - `secrets_at_rest`: no secret appears in plaintext in the data directory.
//! - `tls`: HTTPS with a pinned CA, certificate reload on SIGHUP, plain HTTP refused off loopback.
//! - `durability`: scenario `crash` of issue 6: the real binary killed with SIGKILL under
//!   load, 100 times, loses nothing acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin_cli;
mod cli;
mod console;
mod durability;
mod observability;
mod openapi;
mod permissions;
mod rate_limits;
mod routes;
mod secrets_at_rest;
mod store_conformance;
mod support;
mod sweep;
mod tidy;
mod tls;

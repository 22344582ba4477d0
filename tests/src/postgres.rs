//! A fresh PostgreSQL database per test, on the server named by
//! `LICENSING_TEST_POSTGRES` (a superuser's URL, as `scripts/postgres start`
//! prints it; `scripts/test` starts one and sets it).
//!
//! Without it the test fails, saying how to get one: a suite that passes
//! without PostgreSQL would hide that the PostgreSQL store went untested. A
//! machine that cannot run PostgreSQL sets `LICENSING_SKIP_POSTGRES=1`, and
//! the tests that need it return early, each printing that it skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hash::{BuildHasher as _, Hasher as _};

/// The server's URL, for tests.
pub const SERVER_VAR: &str = "LICENSING_TEST_POSTGRES";
/// Set to `1` to skip the tests that need PostgreSQL.
pub const SKIP_VAR: &str = "LICENSING_SKIP_POSTGRES";

/// The URL of a new, empty database named `PREFIX_<random>` on the test
/// server; `None` when [`SKIP_VAR`] is `1` (the caller returns). Panics when
/// the server is not configured or the database cannot be created.
pub fn fresh_database(prefix: &str) -> Option<String> {
    let Some(server) = std::env::var(SERVER_VAR).ok().filter(|v| !v.is_empty()) else {
        if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
            println!("skipped: {SKIP_VAR}=1 and no {SERVER_VAR}");
            return None;
        }
        panic!(
            "this test needs PostgreSQL: set {SERVER_VAR} to a superuser URL \
             (`scripts/postgres start /tmp/pg` prints one; scripts/test does it), \
             or {SKIP_VAR}=1 to skip it"
        );
    };
    let name = format!("{prefix}_{:016x}", random_u64());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = runtime
        .block_on(control_plane::store::postgres::create_database(
            &server, &name,
        ))
        .unwrap_or_else(|e| {
            panic!(
                "creating the database {name} on {}: {e}",
                control_plane::store::postgres::redact(&server)
            )
        });
    Some(url)
}

/// 64 random bits, from the standard library's per-process random hash keys
/// (enough to keep test databases apart; no secret depends on it).
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

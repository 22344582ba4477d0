//! A fresh PostgreSQL database per test, on the server `LICENSING_TEST_POSTGRES`
//! names (a superuser URL; `scripts/test` starts one with `scripts/postgres`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};

/// The server's URL, or `None` when `LICENSING_SKIP_POSTGRES=1` asks to skip the
/// PostgreSQL tests. Panics when neither is set: a missing server must not let
/// the tests pass unnoticed.
pub fn server() -> Option<String> {
    if let Ok(url) = std::env::var("LICENSING_TEST_POSTGRES") {
        return Some(url);
    }
    if std::env::var("LICENSING_SKIP_POSTGRES").as_deref() == Ok("1") {
        eprintln!("LICENSING_SKIP_POSTGRES=1: skipping a PostgreSQL test");
        return None;
    }
    panic!(
        "LICENSING_TEST_POSTGRES is not set: start a server with `scripts/postgres start DIR` \
         and set it to the URL printed (or set LICENSING_SKIP_POSTGRES=1 to skip)"
    );
}

/// Creates a database named `prefix` plus a unique suffix on the server of
/// [`server`] and returns its URL (panics when the server is not configured:
/// call [`server`] first to honour `LICENSING_SKIP_POSTGRES`).
pub fn fresh_database(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = server().expect("LICENSING_TEST_POSTGRES");
    // Unique on the server: this process (at this second) and a count within it.
    let name = format!(
        "{prefix}_{}_{}_{}",
        keys::UnixTime::now().secs(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(control_plane::store::postgres::create_database(
            &server, &name,
        ))
        .unwrap_or_else(|e| panic!("creating the database {name}: {e}"))
}

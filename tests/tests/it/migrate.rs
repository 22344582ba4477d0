//! `control-plane migrate` on the real binaries (issue 9): a sled installation
//! populated through the CLI and a running appliance, copied into a fresh
//! PostgreSQL database, then served from it with the same KEK. Every license
//! reads back as it did, the old admin token and a user's token still work,
//! the appliance heartbeats on, and the audit chain verifies with the old
//! records and the new ones. The refusals: a database that is not empty, a
//! sled directory whose server still runs, and a `--to` that is not
//! PostgreSQL.
//!
//! Needs `LICENSING_TEST_POSTGRES` (`e2e::postgres`).

use e2e::procs::{ApplianceProc, ControlPlaneProc, Output, PlaneOptions, control_plane};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The licenses' heartbeat interval (the settings' minimum).
const HB: u64 = 10;
/// Long enough for `run` to heartbeat: two intervals and some.
const NOTICE: Duration = Duration::from_secs(3 * HB + 5);

fn say(started: Instant, what: impl std::fmt::Display) {
    println!(
        "migrate: [{:>5.1} s] {what}",
        started.elapsed().as_secs_f64()
    );
}

/// An appliance activated on `plane` (exit 0).
fn activated(plane: &ControlPlaneProc, name: &str, id: &str, key: &str) -> ApplianceProc {
    let app = ApplianceProc::new(name, plane, None);
    let out = app.activate(&plane.url, id, key);
    assert_eq!(out.code, Some(0), "{name} activate: {out:?}");
    app
}

/// The record count `audit verify` printed ("audit chain intact: N records").
fn intact_count(out: &Output) -> u64 {
    assert_eq!(out.code, Some(0), "audit verify: {out:?}");
    out.stdout
        .trim()
        .strip_prefix("audit chain intact: ")
        .and_then(|rest| rest.strip_suffix(" records"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("audit verify printed {:?}", out.stdout))
}

/// Every audit record the server lists, oldest first, through the pages.
fn all_audit(plane: &ControlPlaneProc) -> Vec<Value> {
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["audit", "list", "--limit", "1000"];
        if let Some(cursor) = &cursor {
            args.extend(["--cursor", cursor.as_str()]);
        }
        let page = plane.cli_ok(&args);
        records.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return records,
        }
    }
}

/// `licenses show` of each id, whole.
fn shows(plane: &ControlPlaneProc, ids: &[String]) -> Vec<Value> {
    ids.iter().map(|id| plane.show(id)).collect()
}

#[test]
fn migrate_round_trip_from_a_populated_sled_store() {
    let Some(database) = e2e::postgres::fresh_database("migrate") else {
        return;
    };
    let t = Instant::now();
    let mut sled = ControlPlaneProc::start(PlaneOptions::default());
    let fast = ["--heartbeat-interval-secs", "10"];

    // ----- populate the sled installation through the CLI -----
    let settings = sled.settings_set(&["default_grace_days=9"]);
    assert_eq!(settings["default_grace_days"], 9, "{settings}");
    let (issued, _) = sled.issue("issued-co", &[]);
    let (active, active_key) = sled.issue("active-co", &fast);
    let app = activated(&sled, "active-box", &active, &active_key);
    let mut run = app.run();
    let before = app.wait_heartbeat(1, NOTICE);
    let (grace, grace_key) = sled.issue("grace-co", &fast);
    let _grace_box = activated(&sled, "grace-box", &grace, &grace_key);
    let revoked = sled.revoke(&grace, 5);
    let card = revoked.get("license").unwrap_or(&revoked);
    assert_eq!(card["status"], "grace", "{revoked}");
    let (suspended, _) = sled.issue("suspended-co", &[]);
    sled.cli_ok(&["licenses", "suspend", &suspended]);
    let (restored, _) = sled.issue("restored-co", &[]);
    sled.cli_ok(&["licenses", "suspend", &restored]);
    sled.cli_ok(&["licenses", "restore", &restored]);
    let (reinstated, reinstated_key) = sled.issue("reinstated-co", &fast);
    let _reinstated_box = activated(&sled, "reinstated-box", &reinstated, &reinstated_key);
    sled.revoke(&reinstated, 0);
    sled.reinstate(&reinstated);
    let (regenerated, _) = sled.issue("regenerated-co", &[]);
    let _new_key = sled.regenerate(&regenerated);
    let (rebound, rebound_key) = sled.issue("rebound-co", &fast);
    let _old_box = activated(&sled, "old-box", &rebound, &rebound_key);
    sled.unbind(&rebound);
    let support = sled.cli_ok(&[
        "users",
        "create",
        "--name",
        "support-1",
        "--role",
        "support",
    ]);
    let support_token = support["token"]
        .as_str()
        .expect("the user's token")
        .to_owned();
    let created = sled.cli_ok(&["signing-keys", "create"]);
    let kid = created["kid"].as_str().expect("a kid").to_owned();
    sled.cli_ok(&["signing-keys", "activate", &kid]);
    // The running box takes a lease from the new key before the move.
    let rotated = app.wait_heartbeat(before["lease_seq"].as_u64().unwrap(), NOTICE);
    let ids = [
        issued,
        active.clone(),
        grace,
        suspended,
        restored,
        reinstated,
        regenerated,
        rebound,
    ]
    .map(|id| id.to_owned());
    say(
        t,
        format!(
            "sled populated: {} licenses, a user, signing key {kid}, the box at lease seq {}",
            ids.len(),
            rotated["lease_seq"]
        ),
    );

    // ----- refused while the sled server runs: sled locks its directory -----
    let store = sled.store();
    let out = control_plane(&["migrate", "--from", &store, "--to", &database]);
    assert_ne!(out.code, Some(0), "migrate from a running sled: {out:?}");
    assert!(out.stderr.contains("stop it"), "{out:?}");
    say(
        t,
        "migrate from a running sled server: refused, told to stop it",
    );

    // ----- refused: --to not PostgreSQL (clap's usage error) -----
    let elsewhere = tempfile::tempdir().unwrap();
    let sled_target = format!("sled:{}", elsewhere.path().display());
    let out = control_plane(&["migrate", "--from", &store, "--to", &sled_target]);
    assert_eq!(out.code, Some(2), "migrate --to sled: {out:?}");
    assert!(out.stderr.contains("postgres://"), "{out:?}");
    say(t, "migrate --to sled:...: usage error (exit 2)");

    // The state to compare, with no heartbeat changing it: the box stopped.
    assert_eq!(run.stop(), Some(0), "run stops on SIGTERM with 0");
    let expected = shows(&sled, &ids);
    let expected_audit = all_audit(&sled);
    let addr = sled.addr;
    sled.stop();
    let sled_records = intact_count(&sled.audit_verify());
    assert_eq!(sled_records, expected_audit.len() as u64);

    // ----- the migration -----
    let out = control_plane(&["migrate", "--from", &store, "--to", &database]);
    assert_eq!(out.code, Some(0), "migrate: {out:?}");
    let printed = format!(
        "migrated and verified: {} licenses, 2 users, 3 keys, {sled_records} audit records (chain intact)",
        ids.len()
    );
    assert_eq!(out.stdout.trim(), printed, "{out:?}");
    say(t, format!("migrate: {}", out.stdout.trim()));

    // ----- served from PostgreSQL, same KEK, same address -----
    let kek = sled.kek_file();
    let mut pg = ControlPlaneProc::start_on_postgres(
        &database,
        &kek,
        &sled.token,
        addr,
        PlaneOptions::default(),
    );
    assert_eq!(pg.addr, addr);
    let got = shows(&pg, &ids);
    for (want, got) in expected.iter().zip(&got) {
        assert_eq!(got, want, "licenses show after the migration");
    }
    assert_eq!(
        all_audit(&pg),
        expected_audit,
        "audit list after the migration"
    );
    let (code, listed) = pg.cli_as(&support_token, &["licenses", "list", "--limit", "500"]);
    assert_eq!(code, Some(0), "the support user's token: {listed}");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(ids.len()));
    say(
        t,
        "served from PostgreSQL: every license and audit record as on sled; both tokens work",
    );

    let mut run = app.run();
    let after = app.wait_heartbeat(rotated["lease_seq"].as_u64().unwrap(), NOTICE);
    assert_eq!(after["state"], "active", "{after}");
    say(
        t,
        format!(
            "the box heartbeats on PostgreSQL: lease seq {}",
            after["lease_seq"]
        ),
    );
    pg.revoke(&active, 3);
    let status = app.wait_status("the grace lease", NOTICE, |s| s["state"] == "grace");
    assert_eq!(status["state"], "grace");
    assert_eq!(run.stop(), Some(0));
    let audit_now = all_audit(&pg);
    assert!(audit_now.len() > expected_audit.len());
    assert_eq!(audit_now[..expected_audit.len()], expected_audit[..]);
    let pg_records = intact_count(&pg.audit_verify());
    assert_eq!(pg_records, audit_now.len() as u64);
    say(
        t,
        format!(
            "audit verify --store: intact, {sled_records} migrated + {} new records",
            pg_records - sled_records
        ),
    );

    // ----- refused: the database is not empty; nothing in it changes -----
    let shows_before = shows(&pg, &ids);
    let out = control_plane(&["migrate", "--from", &store, "--to", &database]);
    assert_ne!(
        out.code,
        Some(0),
        "migrate into a non-empty database: {out:?}"
    );
    assert!(out.stderr.contains("not empty"), "{out:?}");
    assert_eq!(shows(&pg, &ids), shows_before);
    assert_eq!(all_audit(&pg), audit_now);
    assert_eq!(intact_count(&pg.audit_verify()), pg_records);
    say(
        t,
        "migrate into the non-empty database: refused, nothing changed",
    );
    pg.stop();
}

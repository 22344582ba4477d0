//! Issue 6's scenarios on the real binaries: `control-plane` and `appliance` as
//! separate processes (`e2e::procs`), each on its own data directory, with days
//! passing through libfaketime. Each test is named after its scenario and prints
//! one line per check (`cargo test -p e2e --test it scenario_ -- --nocapture`).
//!
//! Licenses are issued with a 10 s heartbeat interval (the smallest the
//! settings allow), so `appliance run` heartbeats and checks its clock every
//! 10 s (its `CHECK_EVERY`); every wait below is a poll with a deadline a few
//! intervals long.

use e2e::procs::{ApplianceProc, ControlPlaneProc, FakeClock, PlaneOptions, real_now, unix};
use serde_json::Value;
use std::time::{Duration, Instant};

const DAY: i64 = 86_400;
/// The heartbeat interval the scenarios' licenses are issued with (the minimum).
const HB: u64 = 10;
/// Long enough for `run` to notice anything: two check periods and some.
const NOTICE: Duration = Duration::from_secs(3 * HB + 5);

fn say(scenario: &str, started: Instant, what: impl std::fmt::Display) {
    println!(
        "scenario {scenario}: [{:>5.1} s] {what}",
        started.elapsed().as_secs_f64()
    );
}

fn issue_fast(plane: &ControlPlaneProc, customer: &str) -> (String, String) {
    plane.issue(customer, &["--heartbeat-interval-secs", &HB.to_string()])
}

fn state(status: &Value) -> String {
    match (status["state"].as_str(), status["reason"].as_str()) {
        (Some(s), Some(r)) => format!("{s}({r})"),
        (Some(s), None) => s.to_owned(),
        _ => status.to_string(),
    }
}

fn seq(status: &Value) -> u64 {
    status["lease_seq"].as_u64().unwrap_or(0)
}

/// An appliance activated on `plane`: asserts exit 0 and `active`.
fn activated(
    plane: &ControlPlaneProc,
    name: &str,
    clock: Option<FakeClock>,
    id: &str,
    key: &str,
) -> ApplianceProc {
    let app = ApplianceProc::new(name, plane, clock);
    let out = app.activate(&plane.url, id, key);
    assert_eq!(out.code, Some(0), "{name} activate: {out:?}");
    let (code, status) = app.status();
    assert_eq!(code, Some(0), "{status}");
    assert_eq!(status["state"], "active", "{status}");
    app
}

/// Scenario 6: the appliance's data directory copied to a second process; the
/// control plane flags the clone within two heartbeat intervals and audits it.
#[test]
fn scenario_clone() {
    let t = Instant::now();
    let s = "clone";
    let plane = ControlPlaneProc::start(PlaneOptions::default());
    let (id, key) = issue_fast(&plane, "clone-co");
    let original = activated(&plane, "original", None, &id, &key);
    let mut run = original.run();
    let status = original.wait_heartbeat(1, NOTICE);
    say(
        s,
        t,
        format!("original activated and heartbeating (seq {})", seq(&status)),
    );
    assert_eq!(run.stop(), Some(0), "run stops on SIGTERM with 0");

    let clone = original.clone_to("clone");
    say(s, t, "data directory copied to a second appliance");
    let started = Instant::now();
    let mut a = original.run();
    let mut b = clone.run();
    let limit = Duration::from_secs(2 * HB);
    let flagged = e2e::procs::wait_for(
        "license.clone_suspected in the audit log",
        limit + Duration::from_secs(5),
        || {
            plane
                .audit(&id)
                .into_iter()
                .find(|r| r["action"] == "license.clone_suspected")
        },
    );
    let after = started.elapsed();
    say(
        s,
        t,
        format!(
            "audit list shows license.clone_suspected after {:.1} s ({}) ",
            after.as_secs_f64(),
            flagged["metadata"]
        ),
    );
    assert!(
        after <= limit,
        "flagged after {after:?}, more than two intervals"
    );
    assert!(
        a.is_running() && b.is_running(),
        "an unsigned 409 locks neither box"
    );
    let statuses = [original.status().1, clone.status().1];
    let told = statuses
        .iter()
        .filter(|s| {
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("clone_suspected"))
        })
        .count();
    say(
        s,
        t,
        format!("{told} of the two boxes reports clone_suspected in status"),
    );
    assert!(told >= 1, "{statuses:?}");
    a.kill();
    b.kill();
}

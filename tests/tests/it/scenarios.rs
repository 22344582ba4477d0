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
    // The fleet-wide interval this time (10 s is the settings' minimum).
    let settings = plane.settings_set(&[&format!("heartbeat_interval_secs={HB}")]);
    assert_eq!(settings["heartbeat_interval_secs"], HB, "{settings}");
    let (id, key) = plane.issue("clone-co", &[]);
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
    // The flagged box records the (unsigned, so not locking) 409 once the
    // answer reaches it, a moment after the audit record is written.
    let told = e2e::procs::wait_for("a box reporting clone_suspected", NOTICE, || {
        let told = [original.status().1, clone.status().1]
            .iter()
            .filter(|s| {
                s["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("clone_suspected"))
            })
            .count();
        (told > 0).then_some(told)
    });
    say(
        s,
        t,
        format!("{told} of the two boxes reports clone_suspected in status"),
    );
    a.kill();
    b.kill();
}

/// The license object of an admin answer (a card, or `{license: card, ...}`).
fn card(answer: &Value) -> &Value {
    answer.get("license").unwrap_or(answer)
}

fn fake_clock(dir: &tempfile::TempDir) -> FakeClock {
    FakeClock::new(dir.path())
}

/// Scenario 1: issue → activate → heartbeats → revoke (5 days) → grace banner →
/// day 5 + 1 s expired, `run` exits non-zero, and again when restarted →
/// reinstate → the next start runs and stays up.
///
/// The control plane runs under the same fake clock as the appliance: the
/// grace deadline and the sweep are judged by its clock.
#[test]
fn scenario_lifecycle() {
    let t = Instant::now();
    let s = "lifecycle";
    let tmp = tempfile::tempdir().unwrap();
    let clock = fake_clock(&tmp);
    let mut plane = ControlPlaneProc::start(PlaneOptions {
        sweep_interval_secs: Some(1),
        clock: Some(clock.clone()),
    });
    let (id, key) = issue_fast(&plane, "lifecycle-co");
    say(s, t, format!("issued {id}"));
    let app = activated(&plane, "box", Some(clock.clone()), &id, &key);
    say(s, t, "activated: active");
    let mut run = app.run();
    let status = app.wait_heartbeat(1, NOTICE);
    say(s, t, format!("run heartbeats: lease seq {}", seq(&status)));

    let revoked = plane.revoke(&id, 5);
    assert_eq!(card(&revoked)["status"], "grace", "{revoked}");
    let until = unix(&card(&revoked)["grace_expires_at"]).expect("grace_expires_at");
    let days = (until.secs() - clock.now().secs()) as f64 / DAY as f64;
    assert!((days - 5.0).abs() < 0.01, "grace of {days} days");
    say(s, t, format!("revoked with 5 days' grace: until {until}"));
    let status = app.wait_status("the grace lease", NOTICE, |s| s["state"] == "grace");
    let banner = status["banner"].as_str().unwrap_or_default();
    assert!(
        banner.starts_with("License in grace period. Service will stop on")
            && banner.contains(&until.to_rfc3339()),
        "{status}"
    );
    assert_eq!(
        unix(&status["lease_expires_at"]),
        Some(until),
        "lease exp <= grace end"
    );
    say(s, t, format!("grace banner: {banner:?}"));

    clock.set_at(until.plus(-3600));
    let (code, status) = app.status();
    assert_eq!(
        (code, state(&status).as_str()),
        (Some(0), "grace"),
        "{status}"
    );
    assert!(run.is_running());
    say(s, t, "day 5 - 1 h: still in grace, run still up");

    clock.set_at(until.plus(1));
    let code = run.wait_exit(NOTICE);
    assert_eq!(code, Some(1), "{}", run.output());
    let (code, status) = app.status();
    assert_eq!(
        (code, state(&status).as_str()),
        (Some(1), "locked(expired)"),
        "{status}"
    );
    assert_eq!(app.check(), Some(1));
    say(
        s,
        t,
        format!(
            "day 5 + 1 s: appliance run exited {code:?} ({}); check exits 1",
            state(&status)
        ),
    );
    e2e::procs::wait_for("the control plane to expire the license", NOTICE, || {
        (plane.show(&id)["status"] == "expired").then_some(())
    });
    assert!(
        plane
            .audit_actions(&id)
            .iter()
            .any(|a| a == "license.expire")
    );
    say(
        s,
        t,
        "control plane: license expired (sweep), license.expire audited",
    );

    let mut again = app.run();
    let code = again.wait_exit(NOTICE);
    assert_eq!(code, Some(1), "{}", again.output());
    say(
        s,
        t,
        format!("restarted as systemd would: exited {code:?} again"),
    );

    let reinstated = plane.reinstate(&id);
    assert_eq!(card(&reinstated)["status"], "active", "{reinstated}");
    say(s, t, "reinstated");
    let before = seq(&app.status().1);
    let mut back = app.run();
    let status = app.wait_heartbeat(before, NOTICE);
    assert_eq!(state(&status), "active", "{status}");
    let status = app.wait_heartbeat(seq(&status), NOTICE);
    assert_eq!(state(&status), "active", "{status}");
    assert!(back.is_running(), "{}", back.output());
    say(
        s,
        t,
        format!(
            "next start runs and stays up: active, seq {}, after two heartbeats",
            seq(&status)
        ),
    );
    assert_eq!(back.stop(), Some(0));
    plane.stop();
    let verify = plane.audit_verify();
    assert_eq!(verify.code, Some(0), "{verify:?}");
    say(s, t, "control plane stopped: audit verify exits 0");
}

/// Scenario 2: the control plane stopped; at day 13 the appliance runs with the
/// offline banner, at day 14 + 1 s it is locked; the control plane comes back
/// and the next heartbeat restores service.
#[test]
fn scenario_offline() {
    let t = Instant::now();
    let s = "offline";
    let tmp = tempfile::tempdir().unwrap();
    let clock = fake_clock(&tmp);
    let mut plane = ControlPlaneProc::start(PlaneOptions::default());
    let (id, key) = issue_fast(&plane, "offline-co");
    let app = activated(&plane, "box", Some(clock.clone()), &id, &key);
    let mut run = app.run();
    let status = app.wait_heartbeat(1, NOTICE);
    let last = unix(&status["last_success"]).expect("last_success");
    say(
        s,
        t,
        format!(
            "activated, heartbeating (seq {}, last {last})",
            seq(&status)
        ),
    );

    plane.stop();
    say(s, t, "control plane stopped");
    clock.set_at(last.plus(13 * DAY));
    let status = app.wait_status("the offline state at day 13", NOTICE, |s| {
        s["state"] == "offline"
    });
    let banner = status["banner"].as_str().unwrap_or_default();
    assert!(
        banner.starts_with("No contact with the license server for 13 d"),
        "{status}"
    );
    assert_eq!(status["runs"], true);
    let locks_at = unix(&status["locks_at"]).expect("locks_at");
    assert_eq!(
        locks_at,
        last.plus(14 * DAY),
        "the offline window is 14 days"
    );
    assert_eq!(app.check(), Some(0));
    assert!(run.is_running());
    say(
        s,
        t,
        format!("day 13: runs, check exits 0, banner {banner:?}"),
    );

    clock.set_at(locks_at.plus(1));
    let code = run.wait_exit(NOTICE);
    assert_eq!(code, Some(1), "{}", run.output());
    assert_eq!(app.check(), Some(1));
    let (_, status) = app.status();
    assert_eq!(state(&status), "locked(expired)", "{status}");
    say(
        s,
        t,
        format!(
            "day 14 + 1 s: run exited {code:?}, check exits 1, {}",
            state(&status)
        ),
    );

    plane.restart();
    say(
        s,
        t,
        format!("control plane back on the same address {}", plane.url),
    );
    let before = seq(&status);
    let mut back = app.run();
    let status = app.wait_heartbeat(before, NOTICE);
    assert_eq!(
        (state(&status).as_str(), &status["runs"]),
        ("active", &Value::Bool(true)),
        "{status}"
    );
    assert!(back.is_running());
    assert_eq!(app.check(), Some(0));
    say(
        s,
        t,
        format!(
            "next heartbeat (seq {}) restored service: active, check exits 0",
            seq(&status)
        ),
    );
    assert_eq!(back.stop(), Some(0));
}

/// Scenario 3: the clock set back a day locks (`clock_tamper`) until a
/// heartbeat succeeds; moved forward 20 days it locks (the lease ran out) until
/// a heartbeat succeeds.
///
/// The clock moves while `run` is stopped and `check` judges: a running `run`
/// whose heartbeat comes before its next clock check heals at once (the signed
/// `iat` resynchronises it), which would make the lock a race to observe.
#[test]
fn scenario_clock() {
    let t = Instant::now();
    let s = "clock";
    let tmp = tempfile::tempdir().unwrap();
    let clock = fake_clock(&tmp);
    let mut plane = ControlPlaneProc::start(PlaneOptions::default());
    let (id, key) = issue_fast(&plane, "clock-co");
    let app = activated(&plane, "box", Some(clock.clone()), &id, &key);
    let mut run = app.run();
    let status = app.wait_heartbeat(1, NOTICE);
    assert_eq!(run.stop(), Some(0));
    say(
        s,
        t,
        format!("activated, heartbeated (seq {}), run stopped", seq(&status)),
    );

    clock.set_offset(-DAY);
    assert_eq!(app.check(), Some(1));
    let (code, status) = app.status();
    assert_eq!(
        (code, state(&status).as_str()),
        (Some(1), "locked(clock_tamper)"),
        "{status}"
    );
    let mut locked = app.run();
    // `run` heartbeats first, so this start already recovers; the lock it
    // found is proved by the two answers above.
    let status = app.wait_heartbeat(seq(&status), NOTICE);
    assert_eq!(state(&status), "active", "{status}");
    say(
        s,
        t,
        format!(
            "clock set back 1 day: check exits 1, locked(clock_tamper); a heartbeat (seq {}) recovered: active",
            seq(&status)
        ),
    );
    assert_eq!(locked.stop(), Some(0));
    assert_eq!(
        app.check(),
        Some(0),
        "recovered for good, with the clock still a day behind"
    );

    clock.set_offset(20 * DAY);
    assert_eq!(app.check(), Some(1));
    let (code, status) = app.status();
    assert_eq!(
        (code, state(&status).as_str()),
        (Some(1), "locked(expired)"),
        "{status}"
    );
    let mut back = app.run();
    let status = app.wait_heartbeat(seq(&status), NOTICE);
    assert_eq!(state(&status), "active", "{status}");
    assert!(back.is_running());
    say(
        s,
        t,
        format!(
            "clock forward 20 days: check exits 1, locked(expired); a heartbeat (seq {}) recovered: active",
            seq(&status)
        ),
    );
    assert_eq!(back.stop(), Some(0));

    // A running `run` with no heartbeat to heal it (control plane down): its
    // own check catches the clock set back (wall against monotonic time, which
    // libfaketime leaves real) and it exits.
    plane.stop();
    let mut running = app.run();
    let (code, status) = app.status();
    assert_eq!(code, Some(0), "{status}");
    assert!(running.is_running());
    clock.set_offset(clock.offset() - DAY);
    let code = running.wait_exit(NOTICE);
    assert_eq!(code, Some(1), "{}", running.output());
    let (_, status) = app.status();
    assert_eq!(state(&status), "locked(clock_tamper)", "{status}");
    assert!(
        running.output().contains("the clock was set back"),
        "{}",
        running.output()
    );
    say(
        s,
        t,
        format!(
            "control plane down, run running, clock set back 1 day: run exited {code:?}, locked(clock_tamper)"
        ),
    );
    plane.restart();
    let mut again = app.run();
    let status = app.wait_heartbeat(seq(&status), NOTICE);
    assert_eq!(state(&status), "active", "{status}");
    assert!(again.is_running());
    say(
        s,
        t,
        format!(
            "control plane back: the next run's heartbeat (seq {}) recovered: active",
            seq(&status)
        ),
    );
    assert_eq!(again.stop(), Some(0));
}

/// Scenario 4: a regenerated key locks the box with a signed `invalid_key`
/// (run exits, and again on restart) until the new key is installed; a rebind
/// locks the old box with `rebound` and the new box activates.
#[test]
fn scenario_regenerate_rebind() {
    let t = Instant::now();
    let s = "regenerate";
    let plane = ControlPlaneProc::start(PlaneOptions::default());
    let (id, key) = issue_fast(&plane, "regen-co");
    let a = activated(&plane, "box-a", None, &id, &key);
    let mut run = a.run();
    let status = a.wait_heartbeat(1, NOTICE);
    say(
        s,
        t,
        format!("box-a activated, heartbeating (seq {})", seq(&status)),
    );

    let new_key = plane.regenerate(&id);
    assert_ne!(new_key, key);
    let code = run.wait_exit(NOTICE);
    assert_eq!(code, Some(1), "{}", run.output());
    let (_, status) = a.status();
    assert_eq!(state(&status), "locked(invalid_key)", "{status}");
    say(
        s,
        t,
        format!("regenerated: old key got a signed invalid_key, run exited {code:?}"),
    );
    for round in 1..=2 {
        let mut again = a.run();
        let code = again.wait_exit(NOTICE);
        assert_eq!(code, Some(1), "{}", again.output());
        say(s, t, format!("lock loop: restart {round} exited {code:?}"));
    }
    let out = a.activate(&plane.url, &id, &new_key);
    assert_eq!(out.code, Some(0), "{out:?}");
    let (code, status) = a.status();
    assert_eq!(
        (code, state(&status).as_str()),
        (Some(0), "active"),
        "{status}"
    );
    let mut run = a.run();
    let status = a.wait_heartbeat(seq(&status), NOTICE);
    assert!(run.is_running());
    say(
        s,
        t,
        format!(
            "new key installed (activate): active, heartbeating (seq {})",
            seq(&status)
        ),
    );

    let s = "rebind";
    // The replacement box: another data directory (so another device key) on
    // this host; support rebinds to the fingerprint it reports.
    let b = ApplianceProc::new("box-b", &plane, None);
    let fingerprint = b.fingerprint(&id);
    let rebound = plane.rebind_to(&id, &fingerprint);
    assert_eq!(
        card(&rebound)["binding"]["device_key"],
        Value::Null,
        "{rebound}"
    );
    let code = run.wait_exit(NOTICE);
    assert_eq!(code, Some(1), "{}", run.output());
    let (_, status) = a.status();
    assert_eq!(state(&status), "locked(rebound)", "{status}");
    say(
        s,
        t,
        format!("rebind --fingerprint (box-b's): box-a got a signed rebound, run exited {code:?}"),
    );
    let out = b.activate(&plane.url, &id, &new_key);
    assert_eq!(out.code, Some(0), "box-b activate: {out:?}");
    let mut run_b = b.run();
    let status = b.wait_heartbeat(1, NOTICE);
    assert!(run_b.is_running());
    say(
        s,
        t,
        format!(
            "box-b (another data dir, another device key) activated, heartbeating (seq {})",
            seq(&status)
        ),
    );
    let mut again = a.run();
    assert_eq!(again.wait_exit(NOTICE), Some(1), "{}", again.output());
    let bound = plane.show(&id)["binding"]["device_key"].clone();
    assert_ne!(bound, Value::Null);
    let actions = plane.audit_actions(&id);
    assert!(
        actions.iter().any(|a| a == "license.regenerate")
            && actions.iter().any(|a| a == "license.rebind"),
        "{actions:?}"
    );
    say(
        s,
        t,
        "box-a still locked on restart; audit shows license.regenerate and license.rebind",
    );
    assert_eq!(run_b.stop(), Some(0));
}

/// A small deterministic generator for kill points (no dependency for it).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Scenario 7 (appliance half): 100 cycles of SIGKILL of `appliance run` at a
/// random point of its start-up heartbeat. After each, the store loads
/// (`status --json` answers, not damaged, still licensed) and grants no extra
/// time.
///
/// "No extra time", precisely: the control plane's license card holds
/// `lease_seq`, the number of leases it ever issued for the license (written in
/// the same durable step as the lease), and `last_heartbeat.at`, the `iat` of
/// the latest one. Every lease's `exp` is at most its `iat` plus the offline
/// window, and `iat`s only grow (the control plane's real clock), so no lease
/// it ever issued expires after `last_heartbeat.at + offline_window`. The
/// appliance's status reports only a lease that verified against the pinned
/// roots, so its `lease_seq` must be <= the card's and its `lease_expires_at`
/// <= that bound, read after the appliance's status.
#[test]
fn scenario_appliance_crash() {
    let t = Instant::now();
    let s = "appliance crash";
    let plane = ControlPlaneProc::start(PlaneOptions::default());
    let window = plane.cli_ok(&["settings", "show"])["offline_window_secs"]
        .as_i64()
        .expect("offline_window_secs");
    let (id, key) = issue_fast(&plane, "crash-co");
    let app = activated(&plane, "box", None, &id, &key);
    // Calibration: how long from spawn until the control plane has issued the
    // start-up heartbeat's lease, so the kill points cover the whole heartbeat,
    // before and after it. (Polling the appliance's own status here would
    // compete with `run` for its store.)
    let card = |plane: &ControlPlaneProc| {
        let (code, card) = plane.api_get(&format!("/licenses/{id}"));
        assert_eq!(code, 200, "{card}");
        card
    };
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let before = card(&plane)["lease_seq"].as_u64().unwrap();
        let started = Instant::now();
        let mut run = app.spawn_run();
        e2e::procs::wait_for("the start-up heartbeat", NOTICE, || {
            (card(&plane)["lease_seq"].as_u64().unwrap() > before).then_some(())
        });
        slowest = slowest.max(started.elapsed());
        run.kill();
    }
    let span = u64::try_from(slowest.as_millis()).unwrap().max(50) * 3 / 2;
    let seed = 0x9e37_79b9_7f4a_7c15 ^ real_now().secs() as u64;
    let mut rng = XorShift(seed | 1);
    say(
        s,
        t,
        format!(
            "activated; spawn to issued lease takes up to {} ms; 100 SIGKILLs at 1-{span} ms after spawn (seed {seed:#x})",
            slowest.as_millis()
        ),
    );
    let (mut reached_cp, mut stored, mut between) = (0, 0, 0);
    let mut cp_seq = card(&plane)["lease_seq"].as_u64().unwrap();
    let mut app_seq = seq(&app.status().1);
    for cycle in 0..100 {
        let delay = 1 + rng.next() % span;
        let mut run = app.spawn_run();
        // A kill point, not a wait for a state.
        std::thread::sleep(Duration::from_millis(delay));
        run.kill();
        let (code, status) = app.status();
        assert_eq!(code, Some(0), "cycle {cycle} ({delay} ms): {status}");
        // Active, or offline when kills kept heartbeats from completing for
        // three intervals: either way licensed, on a lease that verified.
        assert!(
            status["runs"] == true && ["active", "offline"].contains(&state(&status).as_str()),
            "cycle {cycle} ({delay} ms): {status}"
        );
        assert!(
            !status["last_error"]
                .as_str()
                .unwrap_or_default()
                .contains("damaged"),
            "cycle {cycle}: {status}"
        );
        let card = card(&plane);
        let card_seq = card["lease_seq"].as_u64().unwrap();
        let latest = unix(&card["last_heartbeat"]["at"]).expect("last_heartbeat.at");
        let exp = unix(&status["lease_expires_at"]).expect("lease_expires_at");
        assert!(
            seq(&status) <= card_seq,
            "cycle {cycle}: seq {} > issued {card_seq}",
            seq(&status)
        );
        assert!(
            exp <= latest.plus(window),
            "cycle {cycle}: lease until {exp} > latest issued {latest} + {window} s"
        );
        if card_seq > cp_seq {
            reached_cp += 1;
        }
        if seq(&status) > app_seq {
            stored += 1;
        }
        if seq(&status) < card_seq {
            between += 1;
        }
        cp_seq = card_seq;
        app_seq = seq(&status);
    }
    say(
        s,
        t,
        format!(
            "100 kills: state loaded and active every time; heartbeat reached the control plane in {reached_cp}, \
             lease stored in {stored}, killed between the two (answer lost) in {between}; never seq > issued or exp > bound"
        ),
    );
    assert!(
        reached_cp > 0 && reached_cp < 100,
        "the kill points must straddle the heartbeat ({reached_cp}/100)"
    );
    let mut run = app.run();
    let status = app.wait_heartbeat(app_seq, NOTICE);
    assert_eq!(state(&status), "active", "{status}");
    assert!(run.is_running());
    let actions = plane.audit_actions(&id);
    assert!(
        !actions.iter().any(|a| a == "license.clone_suspected"),
        "{actions:?}"
    );
    say(
        s,
        t,
        format!(
            "afterwards a run heartbeats (seq {}): the request counter never went back (no clone_suspected)",
            seq(&status)
        ),
    );
    assert_eq!(run.stop(), Some(0));
}

/// A `run` started while another process holds the store for a moment (a
/// `status` or `check` that found no socket to ask) waits for it. Found by the
/// crash scenario: `run` used to go on without its store, report "unlicensed"
/// and exit 1 at once.
#[test]
fn run_waits_for_a_store_held_for_a_moment() {
    let plane = ControlPlaneProc::start(PlaneOptions::default());
    let (id, key) = issue_fast(&plane, "busy-co");
    let app = activated(&plane, "box", None, &id, &key);
    let held = appliance::store::LocalStore::open(&app.data_dir).unwrap();
    let mut run = app.spawn_run();
    // How long the store stays held: the duration under test, not a wait for a state.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        run.is_running(),
        "run gave up on a busy store: {}",
        run.output()
    );
    drop(held);
    let status = app.wait_heartbeat(1, NOTICE);
    assert_eq!(state(&status), "active", "{status}");
    assert!(run.is_running(), "{}", run.output());
    assert_eq!(run.stop(), Some(0));
}

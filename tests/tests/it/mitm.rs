//! Scenario `mitm` (issue 6, scenario 5; DESIGN.md "Tokens" → Denials,
//! Rollback) on the real binaries: `control-plane serve` and `appliance run`
//! as separate processes, with a [`FaultProxy`] on loopback between them (the
//! appliance is activated with the proxy's URL as its server). The proxy's
//! unsigned 401s, 403s and 500s, HTML pages, resets, drops, truncations,
//! delays, replays and forged denials never lock the appliance inside its
//! lease; a replayed older lease is refused; only the control plane's genuine
//! signed denial of the appliance's own request locks it, and that denial,
//! replayed later, is ignored.
//!
//! `appliance run` heartbeats as soon as it starts, so each check starts a
//! `run` with the proxy already in the fault's mode, waits for `status --json`
//! to report what the fault did, checks that `run` is still up (without a child
//! command it exits 1 the moment the box is locked), and stops it with
//! SIGTERM. Days pass for the appliance alone through libfaketime; every
//! heartbeat the control plane answers is answered at its real time.
//!
//! The exact last second of the lease (14 d - 1 s runs, 14 d + 1 s does not)
//! is checked with manual clocks in `faults`, where no process start sits
//! between setting the time and reading the state. Each check here prints one
//! `scenario mitm:` line (`cargo test -p e2e --test it scenario_mitm --
//! --nocapture`).

use e2e::fault_proxy::{Exchange, FaultProxy, Mode};
use e2e::procs::{ApplianceProc, ControlPlaneProc, FakeClock, PlaneOptions, wait_for};
use keys::proto::LeaseResponse;
use serde_json::Value;
use std::time::{Duration, Instant};

const DAY: i64 = 86_400;
/// The heartbeat interval the license is issued with (the minimum).
const HB: &str = "10";
/// How long a `run` may take to start, heartbeat and record the outcome.
const PATIENCE: Duration = Duration::from_secs(30);

/// The scenario's processes and the proxy.
struct Rig {
    plane: ControlPlaneProc,
    app: ApplianceProc,
    clock: FakeClock,
    proxy: FaultProxy,
    runtime: tokio::runtime::Runtime,
    id: String,
    started: Instant,
}

impl Rig {
    fn say(&self, what: impl std::fmt::Display) {
        println!(
            "scenario mitm: [{:>5.1} s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// The genuine heartbeat answers the proxy recorded (what `Replay(n)` indexes).
    fn genuine_heartbeats(&self) -> Vec<Exchange> {
        self.proxy
            .exchanges()
            .into_iter()
            .filter(|e| e.path.ends_with("/heartbeat") && e.upstream.is_some())
            .collect()
    }

    /// Starts `appliance run` with the proxy in `mode` and waits until a
    /// heartbeat has met the mode and `status --json` satisfies `done`. Returns
    /// the status and the running process.
    fn run_through(
        &self,
        mode: &Mode,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> (Value, e2e::procs::Running) {
        self.proxy.set(mode.clone());
        let before = self.proxy.exchanges().len();
        let run = self.app.run();
        wait_for(
            &format!("a heartbeat through the proxy in mode {mode:?}"),
            PATIENCE,
            || {
                self.proxy.exchanges()[before..]
                    .iter()
                    .find(|e| e.path.ends_with("/heartbeat") && e.mode == mode.name())
                    .cloned()
            },
        );
        let status = self.app.wait_status(what, PATIENCE, done);
        (status, run)
    }

    /// A heartbeat through `mode` that must leave the appliance running on the
    /// lease it holds, offline with `why` in `last_error`. Returns the status.
    fn survives(&self, mode: &Mode, why: &str) -> Value {
        let held = self.app.status().1;
        let (status, mut run) = self.run_through(mode, &format!("last_error with {why:?}"), |s| {
            s["last_error"].as_str().is_some_and(|e| e.contains(why))
        });
        assert!(run.is_running(), "{mode:?}: run exited: {}", run.output());
        assert_eq!(status["runs"], true, "{mode:?}: {status}");
        assert!(
            matches!(status["state"].as_str(), Some("active" | "offline")),
            "{mode:?}: {status}"
        );
        for field in ["lease_seq", "lease_expires_at", "last_success"] {
            assert_eq!(status[field], held[field], "{mode:?}: {field} changed");
        }
        let (code, _) = self.app.status();
        assert_eq!(code, Some(0), "{mode:?}: status exits 0 while it runs");
        assert_eq!(run.stop(), Some(0), "{mode:?}: run stops on SIGTERM with 0");
        status
    }

    /// A `run` through `mode` that must renew; returns the new seq.
    fn renews(&self, mode: &Mode) -> u64 {
        let held = seq(&self.app.status().1);
        let (status, mut run) = self.run_through(mode, "a renewed lease", |s| seq(s) > held);
        assert_eq!(status["state"], "active", "{status}");
        assert_eq!(run.stop(), Some(0));
        seq(&status)
    }
}

fn seq(status: &Value) -> u64 {
    status["lease_seq"].as_u64().unwrap_or(0)
}

/// The first part of an appliance's error, without the URL reqwest adds.
fn short(error: &str) -> String {
    match error.find("): ") {
        Some(i) if error.contains("(http") => {
            let head = &error[..error.find(" for url").unwrap_or(i)];
            format!("{head}: {}", &error[i + 3..])
        }
        _ => error.to_owned(),
    }
}

/// The unsigned faults, each with what the appliance must report. The
/// transport's words for a reset, a close and a short body are hyper's:
/// pinning them proves that each fault reached the appliance as that fault.
/// No two neighbours report the same words, so a stale `last_error` never
/// passes for the next fault's.
fn faults() -> Vec<(&'static str, Mode, &'static str)> {
    vec![
        (
            "a proxy's unsigned 401",
            Mode::Unsigned(
                401,
                r#"{"error":"unauthenticated","message":"log in"}"#.into(),
            ),
            "unsigned status 401 (unauthenticated)",
        ),
        (
            "an unsigned 500",
            Mode::Unsigned(500, r#"{"error":"internal","message":"oops"}"#.into()),
            "unsigned status 500 (internal)",
        ),
        (
            "a 403 with a JSON error and no signed denial",
            Mode::Unsigned(403, r#"{"error":"forbidden","message":"blocked"}"#.into()),
            "unsigned status 403 (forbidden)",
        ),
        (
            "a 403 HTML block page",
            Mode::Unsigned(
                403,
                "<html><body>Access denied by policy</body></html>".into(),
            ),
            "unsigned status 403",
        ),
        (
            "a 200 captive-portal HTML page",
            Mode::Unsigned(200, "<html><body>Welcome, sign in</body></html>".into()),
            "status 200 without a lease",
        ),
        (
            "a 502 HTML page",
            Mode::Unsigned(502, "<html><body>Bad gateway</body></html>".into()),
            "unsigned status 502",
        ),
        (
            "a connection reset (RST)",
            Mode::Reset,
            "Connection reset by peer",
        ),
        (
            "a connection closed unanswered",
            Mode::Drop,
            "connection closed before message completed",
        ),
        (
            "the control plane's answer cut inside its body",
            Mode::Truncate(400),
            "end of file before message length reached",
        ),
        (
            "the control plane's answer cut inside its status line",
            Mode::Truncate(10),
            "connection closed before message completed",
        ),
        (
            "the oldest genuine heartbeat answer, replayed",
            Mode::Replay(0),
            "a lease was refused: the lease answers another request (nonce)",
        ),
        (
            "a denial of this very request signed by a key outside the chain",
            Mode::ForgeDenial,
            "an unverifiable denial was ignored",
        ),
    ]
}

#[test]
fn scenario_mitm() {
    let started = Instant::now();
    // The proxy runs on its own threads while the test waits on processes.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let plane = ControlPlaneProc::start(PlaneOptions::default());
    let proxy = runtime.block_on(FaultProxy::start(plane.addr)).unwrap();
    let (id, key) = plane.issue("mitm-co", &["--heartbeat-interval-secs", HB]);
    let work = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(work.path());
    let app = ApplianceProc::new("mitm", &plane, Some(clock.clone()));
    let rig = Rig {
        plane,
        app,
        clock,
        proxy,
        runtime,
        id,
        started,
    };

    let out = rig.app.activate(&rig.proxy.url(), &rig.id, &key);
    assert_eq!(out.code, Some(0), "activate: {out:?}");
    let activation = rig.proxy.last().unwrap();
    assert!(activation.path.ends_with("/activate"), "{activation:?}");
    assert_eq!(activation.upstream, Some(200));
    let mut held = rig.renews(&Mode::Pass);
    rig.say(format!(
        "activated and heartbeating through the proxy at {} (lease seq {held})",
        rig.proxy.url()
    ));

    // Each fault alone.
    for (what, mode, why) in faults() {
        let status = rig.survives(&mode, why);
        let last = rig.proxy.last().unwrap();
        rig.say(format!(
            "proxy answers {what} (sent {:?}, control plane {:?}) → appliance offline ({}), \
             lease runs on (state {}, seq {held}), run still up",
            last.status,
            last.upstream,
            short(status["last_error"].as_str().unwrap()),
            status["state"].as_str().unwrap(),
        ));
    }

    // A slow network is not a fault: a delayed answer is still the control plane's.
    let slow = Instant::now();
    held = rig.renews(&Mode::Delay(Duration::from_millis(1500)));
    assert!(slow.elapsed() >= Duration::from_millis(1500));
    rig.say(format!(
        "proxy delays the answer 1.5 s → renewed all the same (seq {held})"
    ));

    // A replayed older lease: the newest genuine answer recorded is refused too.
    let newest = rig.genuine_heartbeats().len() - 1;
    let status = rig.survives(&Mode::Replay(newest), "another request (nonce)");
    rig.say(format!(
        "proxy replays the newest genuine heartbeat answer → refused ({}), seq {held} kept",
        short(status["last_error"].as_str().unwrap())
    ));
    // What was replayed is genuine and older: refused for that, not for its signature.
    let replayed = rig.replayed_lease(0);
    assert!(replayed < held, "{replayed} < {held}");
    rig.say(format!(
        "the replayed answer verifies against the pinned roots as the control plane's own lease \
         (seq {replayed} < held {held})"
    ));

    // The genuine signed denial: revoked with 0 days, through the proxy in Pass mode.
    let revoked = rig.plane.revoke(&rig.id, 0);
    assert_eq!(revoked["status"], "expired", "{revoked}");
    rig.proxy.set(Mode::Pass);
    let before = rig.proxy.exchanges().len();
    let mut run = rig.app.run();
    assert_eq!(run.wait_exit(PATIENCE), Some(1), "{}", run.output());
    let denial = rig.proxy.exchanges()[before..].last().cloned().unwrap();
    assert_eq!((denial.mode, denial.upstream), ("pass", Some(403)));
    let (code, status) = rig.app.status();
    assert_eq!(code, Some(1), "{status}");
    assert_eq!(
        (status["state"].as_str(), status["reason"].as_str()),
        (Some("locked"), Some("expired")),
        "{status}"
    );
    rig.say(
        "revoke with 0 days → the control plane's signed 403 denial passes the proxy → \
         appliance locked (expired), run exits 1, status exits 1",
    );

    // Reinstated, it resumes; then that genuine denial, replayed, is ignored.
    rig.plane.reinstate(&rig.id);
    held = rig.renews(&Mode::Pass);
    let denial_index = rig
        .genuine_heartbeats()
        .iter()
        .position(|e| e.upstream == Some(403))
        .unwrap();
    let status = rig.survives(
        &Mode::Replay(denial_index),
        "the denial answers another request (nonce)",
    );
    assert_eq!(rig.proxy.last().unwrap().status, Some(403));
    rig.say(format!(
        "reinstated → renewed (seq {held}); proxy replays that genuine signed denial → ignored \
         ({})",
        short(status["last_error"].as_str().unwrap())
    ));

    // Days pass for the appliance with every heartbeat meeting a fault: it runs
    // offline until its lease ends, then locks; contact again restores it.
    let last_success = e2e::procs::unix(&rig.app.status().1["last_success"]).unwrap();
    let locks_at = last_success.plus(14 * DAY);
    let walk = [
        (
            Mode::Unsigned(401, r#"{"error":"unauthenticated"}"#.into()),
            "unsigned status 401",
        ),
        (Mode::Reset, "Connection reset by peer"),
        (Mode::ForgeDenial, "an unverifiable denial was ignored"),
        (
            Mode::Unsigned(500, "<html>oops</html>".into()),
            "unsigned status 500",
        ),
        (Mode::Drop, "connection closed before message completed"),
        (Mode::Replay(0), "another request (nonce)"),
    ];
    let mut days: Vec<i64> = (1..=13).map(|d| d * DAY).collect();
    days.push(14 * DAY - 120);
    for (n, at) in days.iter().enumerate() {
        rig.clock.set_at(last_success.plus(*at));
        let (mode, why) = &walk[n % walk.len()];
        let status = rig.survives(mode, why);
        assert_eq!(status["state"], "offline", "{status}");
        assert_eq!(
            e2e::procs::unix(&status["locks_at"]),
            Some(locks_at),
            "{status}"
        );
    }
    let banner = rig.app.status().1["banner"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    rig.say(format!(
        "a fault on every heartbeat from day 1 to 14 d - 2 min → still runs, offline (banner: {banner})"
    ));
    rig.clock.set_at(locks_at.plus(60));
    rig.proxy.set(Mode::Reset);
    let mut run = rig.app.run();
    assert_eq!(run.wait_exit(PATIENCE), Some(1), "{}", run.output());
    let (code, status) = rig.app.status();
    assert_eq!(code, Some(1), "{status}");
    assert_eq!(status["state"], "locked", "{status}");
    rig.say(format!(
        "14 d + 1 min, still faulted → locked ({}), run exits 1: the lease was the only limit",
        status["reason"].as_str().unwrap_or("?")
    ));
    held = rig.renews(&Mode::Pass);
    rig.say(format!(
        "proxy passes again → renewed (seq {held}), state active"
    ));
}

impl Rig {
    /// Fetches the `n`-th genuine heartbeat answer through the proxy in replay
    /// mode, verifies it against the appliance's pinned trust file, and returns
    /// its seq.
    fn replayed_lease(&self, n: usize) -> u64 {
        self.proxy.set(Mode::Replay(n));
        let url = format!("{}/licenses/{}/heartbeat", self.proxy.url(), self.id);
        let body = self.runtime.block_on(async {
            let response = reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .post(url)
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.bytes().await.unwrap()
        });
        let answer: LeaseResponse = serde_json::from_slice(&body).unwrap();
        let trust = keys::TrustStore::from_json(&std::fs::read_to_string(&self.app.trust).unwrap())
            .unwrap();
        let lease = trust
            .verify_lease_at(&answer.lease, &answer.chain[0], e2e::procs::real_now())
            .unwrap();
        lease.seq
    }
}

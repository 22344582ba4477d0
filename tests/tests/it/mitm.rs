//! Scenario `mitm` (issue 6, scenario 5; DESIGN.md "Tokens" → Denials,
//! Rollback): a [`FaultProxy`] on real loopback sockets between an appliance
//! and the control plane. Its unsigned 401s, 403s and 500s, HTML pages, resets,
//! drops, truncations, delays, replays and forged denials never lock the
//! appliance inside its lease; a replayed older lease is refused; only a
//! genuine signed denial of the appliance's own request locks it.
//!
//! Unlike `faults`, which scripts the answers behind the `Transport` trait,
//! every byte here crosses TCP and the appliance's real `HttpTransport`, so
//! what is tested includes how reqwest reports a reset or a cut-short body.
//! Each check prints one `scenario mitm:` line.

use appliance::agent::{Agent, Outcome, Status};
use appliance::clock::ManualClock;
use appliance::eval::{LockReason, State};
use e2e::fault_proxy::{Exchange, FaultProxy, Mode};
use e2e::{DAY, Plane, agent, machine};
use keys::proto::LeaseResponse;
use serde_json::json;
use std::time::Duration;

/// Time passes for the control plane and the appliance alike.
fn tick(plane: &Plane, clock: &ManualClock, secs: i64) {
    plane.advance(secs);
    clock.advance(secs);
}

fn state_name(status: &Status) -> String {
    serde_json::to_value(status).unwrap()["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The proxy's record of the heartbeat just sent: it met `mode`.
fn met(proxy: &FaultProxy, mode: &Mode) -> Exchange {
    let last = proxy.last().expect("the heartbeat went through the proxy");
    assert!(last.path.ends_with("/heartbeat"), "{last:?}");
    assert_eq!(last.mode, mode.name(), "{last:?}");
    last
}

/// A heartbeat through `mode` that must leave the appliance running on the same
/// lease: offline, with `why` in the reason. Returns the reason.
async fn survives(agent: &Agent, proxy: &FaultProxy, mode: &Mode, why: &str) -> String {
    let before = agent.check();
    proxy.set(mode.clone());
    let outcome = agent.heartbeat_once().await;
    let Outcome::Offline(reason) = outcome else {
        panic!("{mode:?}: expected offline, got {outcome:?}");
    };
    assert!(
        reason.contains(why),
        "{mode:?}: {reason:?} does not say {why:?}"
    );
    let after = agent.check();
    assert!(after.runs, "{mode:?}: {after:?}");
    assert!(
        matches!(after.state, State::Active { .. } | State::Offline { .. }),
        "{mode:?}: {after:?}"
    );
    assert_eq!(
        after.lease_seq, before.lease_seq,
        "{mode:?}: the lease changed"
    );
    assert_eq!(after.lease_expires_at, before.lease_expires_at, "{mode:?}");
    assert_eq!(after.last_success, before.last_success, "{mode:?}");
    met(proxy, mode);
    reason
}

async fn renew(agent: &Agent) -> u64 {
    match agent.heartbeat_once().await {
        Outcome::Renewed { seq, .. } => seq,
        other => panic!("expected a renewal, got {other:?}"),
    }
}

/// The unsigned faults, each with what the appliance must report: the
/// transport's words for a reset, a close and a short body are hyper's, and
/// pinning them proves that each fault reached the appliance as that fault.
fn unsigned_faults() -> Vec<(&'static str, Mode, &'static str)> {
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
            "unsigned status 500",
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
            "the answer cut inside its status line",
            Mode::Truncate(10),
            "connection closed before message completed",
        ),
        (
            "the answer cut inside its body",
            Mode::Truncate(400),
            "end of file before message length reached",
        ),
        (
            "the oldest heartbeat answer replayed",
            Mode::Replay(0),
            "another request (nonce)",
        ),
        (
            "a denial for this request signed by an untrusted key",
            Mode::ForgeDenial,
            "an unverifiable denial was ignored",
        ),
    ]
}

#[tokio::test]
async fn scenario_mitm() {
    let plane = Plane::start().await;
    let upstream = plane.url.strip_prefix("http://").unwrap().parse().unwrap();
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (agent, clock) = agent(&plane, dir.path(), machine(1));
    let (id, key) = plane.issue("acme").await;
    agent.activate(&proxy.url(), &id, &key).await.unwrap();
    assert_eq!(proxy.last().unwrap().upstream, Some(200));
    tick(&plane, &clock, 60);
    renew(&agent).await;
    let mut held = renew(&agent).await;
    let last_success = agent.check().last_success.unwrap();
    println!("scenario mitm: activated and renewed through the proxy (lease seq {held})");

    // Each fault alone, a minute apart.
    let faults = unsigned_faults();
    for (what, mode, why) in &faults {
        tick(&plane, &clock, 60);
        let reason = survives(&agent, &proxy, mode, why).await;
        let status = agent.check();
        println!(
            "scenario mitm: proxy answers {what} → appliance offline ({reason}), lease runs on \
             (state {}, seq {held})",
            state_name(&status)
        );
    }

    // A slow network is not a fault: a delayed answer is still the control plane's.
    tick(&plane, &clock, 60);
    proxy.set(Mode::Delay(Duration::from_millis(1500)));
    held = renew(&agent).await;
    assert_eq!(
        met(&proxy, &Mode::Delay(Duration::ZERO)).upstream,
        Some(200)
    );
    println!("scenario mitm: proxy delays the answer 1.5 s → renewed all the same (seq {held})");
    let last_success = agent.check().last_success.unwrap().max(last_success);

    // Then 13 days and 23:59:59 in which every heartbeat meets a fault, one after
    // another: the appliance runs to the last second of its lease.
    let mut elapsed = 0;
    let mut checkpoints: Vec<i64> = (1..=13).map(|d| d * DAY).collect();
    checkpoints.push(14 * DAY - 1);
    for (n, at) in checkpoints.into_iter().enumerate() {
        tick(&plane, &clock, at - elapsed);
        elapsed = at;
        let (_, mode, why) = &faults[n % faults.len()];
        survives(&agent, &proxy, mode, why).await;
        let status = agent.check();
        assert_eq!(
            status.state,
            State::Offline {
                since: last_success,
                locks_at: last_success.plus(14 * DAY)
            },
            "{mode:?} after {at} s"
        );
    }
    println!(
        "scenario mitm: a fault on every heartbeat for 14 d - 1 s → still runs (state offline, \
         locks at {})",
        appliance::eval::format_time(last_success.plus(14 * DAY))
    );
    proxy.set(Mode::Pass);
    held = renew(&agent).await;
    assert!(matches!(agent.check().state, State::Active { .. }));
    println!("scenario mitm: proxy passes again → renewed (seq {held}), state active");

    // A replayed older lease: every genuine heartbeat answer recorded so far,
    // the newest included, carries a lower seq and another request's nonce.
    let answers: Vec<Exchange> = proxy
        .exchanges()
        .into_iter()
        .filter(|e| e.path.ends_with("/heartbeat") && e.upstream.is_some())
        .collect();
    let newest = answers.len() - 1;
    for n in [0, newest] {
        tick(&plane, &clock, 60);
        proxy.set(Mode::Replay(n));
        let before = agent.check();
        let outcome = agent.heartbeat_once().await;
        let Outcome::Offline(reason) = &outcome else {
            panic!("replay {n}: {outcome:?}");
        };
        assert!(reason.contains("a lease was refused"), "{reason}");
        assert!(reason.contains("another request (nonce)"), "{reason}");
        met(&proxy, &Mode::Replay(n));
        let after = agent.check();
        assert_eq!(after.lease_seq, before.lease_seq);
        assert!(after.runs);
        println!(
            "scenario mitm: proxy replays the {} genuine heartbeat answer → refused ({reason}), \
             appliance keeps seq {held}",
            if n == 0 { "oldest" } else { "newest" }
        );
    }
    // The genuine signed denial: revoked with 0 days of grace, through the proxy.
    plane
        .act(&id, "revoke", Some(json!({"grace_days": 0})))
        .await;
    assert_eq!(plane.status_of(&id).await, "expired");
    tick(&plane, &clock, 60);
    proxy.set(Mode::Pass);
    assert_eq!(
        agent.heartbeat_once().await,
        Outcome::Denied(LockReason::Expired)
    );
    assert_eq!(met(&proxy, &Mode::Pass).upstream, Some(403));
    let status = agent.check();
    assert_eq!(
        status.state,
        State::Locked {
            reason: LockReason::Expired
        }
    );
    assert!(!status.runs);
    println!(
        "scenario mitm: revoke with 0 days → the control plane's signed denial passes the proxy \
         → appliance locked (expired)"
    );

    // Reinstated, it resumes; then that genuine denial, replayed, is ignored.
    plane.act(&id, "reinstate", None).await;
    tick(&plane, &clock, 60);
    held = renew(&agent).await;
    let denial_index = proxy
        .exchanges()
        .into_iter()
        .filter(|e| e.path.ends_with("/heartbeat") && e.upstream.is_some())
        .position(|e| e.upstream == Some(403))
        .unwrap();
    tick(&plane, &clock, 60);
    let reason = survives(
        &agent,
        &proxy,
        &Mode::Replay(denial_index),
        "the denial answers another request (nonce)",
    )
    .await;
    assert_eq!(proxy.last().unwrap().status, Some(403));
    println!(
        "scenario mitm: reinstated → renewed (seq {held}); proxy replays the genuine denial → \
         ignored ({reason})"
    );

    // The leases the proxy replayed really were genuine ones with lower seqs.
    let genuine_first: LeaseResponse = {
        proxy.set(Mode::Replay(0));
        let body = reqwest::Client::new()
            .post(format!("{}/licenses/{id}/heartbeat", proxy.url()))
            .body("{}")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    };
    let replayed = plane
        .trust
        .verify_lease_at(
            &genuine_first.lease,
            &genuine_first.chain[0],
            keys::UnixTime(last_success.secs()),
        )
        .unwrap();
    assert!(replayed.seq < held, "{} < {held}", replayed.seq);
    println!(
        "scenario mitm: the replayed answer verifies as the control plane's own lease (seq {} < \
         held {held}): refused for being old, not for its signature",
        replayed.seq
    );
}

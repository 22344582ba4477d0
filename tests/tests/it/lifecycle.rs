//! An appliance agent against a real control plane on loopback, both on manual
//! clocks moved together: every transition DESIGN.md promises the appliance.

use appliance::agent::{Agent, AgentError, Outcome};
use appliance::clock::ManualClock;
use appliance::eval::{LockReason, State};
use e2e::{DAY, Plane, agent, machine};
use serde_json::json;

/// Both clocks forward by `secs`.
fn advance(plane: &Plane, clock: &ManualClock, secs: i64) {
    plane.advance(secs);
    clock.advance(secs);
}

async fn heartbeat(agent: &Agent) -> Outcome {
    agent.heartbeat_once().await
}

fn locked(reason: LockReason) -> State {
    State::Locked { reason }
}

#[tokio::test]
async fn activation_binds_and_heartbeats_renew() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, clock) = agent(&plane, dir.path(), machine(1));
    assert_eq!(agent.status().state, State::Unlicensed);
    let status = agent.activate(&plane.url, &id, &key).await.unwrap();
    assert!(matches!(status.state, State::Active { .. }), "{status:?}");
    assert_eq!(status.lease_seq, Some(1));
    assert_eq!(plane.status_of(&id).await, "active");
    let (_, card) = plane.call("GET", &format!("/licenses/{id}"), None).await;
    assert_eq!(
        card["binding"]["device_key"],
        agent.device_public_key().unwrap().as_str()
    );
    assert_eq!(card["last_heartbeat"]["version"], "2.0.1");

    advance(&plane, &clock, 60);
    let Outcome::Renewed { seq, exp } = heartbeat(&agent).await else {
        panic!()
    };
    assert_eq!(seq, 2);
    assert_eq!(exp, agent.status().now.plus(14 * DAY));

    // Activating the same box again is idempotent: same device key, one binding.
    let device = agent.device_public_key();
    agent.activate(&plane.url, &id, &key).await.unwrap();
    assert_eq!(agent.device_public_key(), device);
    let activations = plane
        .audit_actions(&id)
        .await
        .iter()
        .filter(|a| *a == "license.activate")
        .count();
    assert_eq!(activations, 1);

    // The state survives a restart of the agent.
    drop(agent);
    let (again, _) = e2e::agent(&plane, dir.path(), machine(1));
    assert_eq!(again.status().lease_seq, Some(3));
    assert!(again.check().runs);
}

#[tokio::test]
async fn revoke_with_grace_then_expiry_then_reinstate() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, clock) = agent(&plane, dir.path(), machine(1));
    agent.activate(&plane.url, &id, &key).await.unwrap();

    let revoked_at = agent.status().now;
    plane
        .act(&id, "revoke", Some(json!({"grace_days": 5})))
        .await;
    advance(&plane, &clock, 60);
    assert!(matches!(heartbeat(&agent).await, Outcome::Renewed { .. }));
    let status = agent.check();
    let until = revoked_at.plus(5 * DAY);
    assert_eq!(status.state, State::Grace { until });
    assert_eq!(
        status.banner.as_deref(),
        Some(
            format!(
                "License in grace period. Service will stop on {}. Contact your administrator.",
                appliance::eval::format_time(until)
            )
            .as_str()
        )
    );
    assert!(status.runs);

    // Four days on, still in grace; at the deadline the lease itself ends.
    advance(&plane, &clock, 4 * DAY);
    assert!(matches!(heartbeat(&agent).await, Outcome::Renewed { .. }));
    assert!(agent.check().runs);
    advance(&plane, &clock, DAY);
    assert_eq!(
        heartbeat(&agent).await,
        Outcome::Denied(LockReason::Expired)
    );
    let status = agent.check();
    assert_eq!(status.state, locked(LockReason::Expired));
    assert_eq!(
        status.banner.as_deref(),
        Some("License expired. Contact your administrator to restore service.")
    );
    assert!(!status.runs);
    assert_eq!(plane.status_of(&id).await, "expired");

    plane.act(&id, "reinstate", None).await;
    advance(&plane, &clock, 60);
    assert!(matches!(heartbeat(&agent).await, Outcome::Renewed { .. }));
    assert!(matches!(agent.check().state, State::Active { .. }));
}

#[tokio::test]
async fn an_expired_lease_without_contact_locks_and_contact_restores() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, clock) = agent(&plane, dir.path(), machine(1));
    agent.activate(&plane.url, &id, &key).await.unwrap();
    let start = agent.status().now;
    // No heartbeats for 13 d 23 h 59 min: offline, still running.
    clock.advance(14 * DAY - 60);
    plane.advance(14 * DAY - 60);
    let status = agent.check();
    assert_eq!(
        status.state,
        State::Offline {
            since: start,
            locks_at: start.plus(14 * DAY)
        }
    );
    assert!(status.runs);
    clock.advance(61);
    plane.advance(61);
    assert_eq!(agent.check().state, locked(LockReason::Expired));
    // One good heartbeat brings it back.
    assert!(matches!(heartbeat(&agent).await, Outcome::Renewed { .. }));
    assert!(matches!(agent.check().state, State::Active { .. }));
}

#[tokio::test]
async fn regenerate_locks_the_old_key_until_the_new_one_is_installed() {
    let plane = Plane::start().await;
    let (id, old_key) = plane.issue("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, clock) = agent(&plane, dir.path(), machine(1));
    agent.activate(&plane.url, &id, &old_key).await.unwrap();
    let body = plane.act(&id, "regenerate", None).await;
    let new_key = body["license_key"].as_str().unwrap().to_owned();
    advance(&plane, &clock, 60);
    assert_eq!(
        heartbeat(&agent).await,
        Outcome::Denied(LockReason::InvalidKey)
    );
    assert_eq!(agent.check().state, locked(LockReason::InvalidKey));
    // Restarting does not help...
    advance(&plane, &clock, 60);
    assert_eq!(
        heartbeat(&agent).await,
        Outcome::Denied(LockReason::InvalidKey)
    );
    // ...installing the new key does, on the same binding.
    let status = agent.activate(&plane.url, &id, &new_key).await.unwrap();
    assert!(matches!(status.state, State::Active { .. }), "{status:?}");
    advance(&plane, &clock, 60);
    assert!(matches!(heartbeat(&agent).await, Outcome::Renewed { .. }));
}

#[tokio::test]
async fn rebind_locks_the_old_box_and_the_new_box_activates() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let (old_dir, new_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (old_box, old_clock) = agent(&plane, old_dir.path(), machine(1));
    old_box.activate(&plane.url, &id, &key).await.unwrap();
    // The new box's fingerprint, as support would read it from `appliance fingerprint`.
    let components = appliance::fingerprint::hashed(&machine(2), &id);
    plane
        .act(&id, "rebind", Some(json!({"fingerprint": components})))
        .await;
    advance(&plane, &old_clock, 60);
    assert_eq!(
        heartbeat(&old_box).await,
        Outcome::Denied(LockReason::Rebound)
    );
    assert_eq!(old_box.check().state, locked(LockReason::Rebound));
    let (new_box, _) = agent(&plane, new_dir.path(), machine(2));
    let status = new_box.activate(&plane.url, &id, &key).await.unwrap();
    assert!(matches!(status.state, State::Active { .. }));
    // A third box is not the one support named.
    let third = tempfile::tempdir().unwrap();
    let (third_box, _) = agent(&plane, third.path(), machine(3));
    assert!(matches!(
        third_box.activate(&plane.url, &id, &key).await,
        Err(AgentError::Offline(_))
    ));
}

#[tokio::test]
async fn suspend_and_restore() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, clock) = agent(&plane, dir.path(), machine(1));
    agent.activate(&plane.url, &id, &key).await.unwrap();
    plane.act(&id, "suspend", None).await;
    advance(&plane, &clock, 60);
    assert_eq!(
        heartbeat(&agent).await,
        Outcome::Denied(LockReason::Suspended)
    );
    assert!(!agent.check().runs);
    plane.act(&id, "restore", None).await;
    advance(&plane, &clock, 60);
    assert!(matches!(heartbeat(&agent).await, Outcome::Renewed { .. }));
    assert!(agent.check().runs);
}

#[tokio::test]
async fn clock_set_back_locks_until_a_heartbeat_and_forward_jumps_recover() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, clock) = agent(&plane, dir.path(), machine(1));
    agent.activate(&plane.url, &id, &key).await.unwrap();
    advance(&plane, &clock, 3600);
    assert!(agent.check().runs);
    // Back by a minute: within the tolerance.
    clock.set_wall(agent.status().now.plus(-60));
    assert!(agent.check().runs);
    // Back by a day: locked, and it stays locked when the clock is put right.
    let real = plane_now(&plane);
    clock.set_wall(real.plus(-DAY));
    assert_eq!(agent.check().state, locked(LockReason::ClockTamper));
    clock.set_wall(real);
    assert_eq!(agent.check().state, locked(LockReason::ClockTamper));
    // Even with the clock still wrong, a good heartbeat resynchronises and recovers.
    clock.set_wall(real.plus(-DAY));
    assert!(matches!(heartbeat(&agent).await, Outcome::Renewed { .. }));
    let status = agent.check();
    assert!(matches!(status.state, State::Active { .. }), "{status:?}");
    assert_eq!(status.now, real);
    // Forward 20 days: past the lease, locked; a heartbeat recovers.
    clock.set_wall(real.plus(19 * DAY));
    assert_eq!(agent.check().state, locked(LockReason::Expired));
    assert!(matches!(heartbeat(&agent).await, Outcome::Renewed { .. }));
    assert!(matches!(agent.check().state, State::Active { .. }));
}

fn plane_now(plane: &Plane) -> keys::UnixTime {
    use control_plane::clock::Clock as _;
    plane.clock.now()
}

#[tokio::test]
async fn a_cloned_store_is_detected_within_two_heartbeats() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let (original, clock) = agent(&plane, dir.path(), machine(1));
    original.activate(&plane.url, &id, &key).await.unwrap();
    advance(&plane, &clock, 60);
    assert!(matches!(
        heartbeat(&original).await,
        Outcome::Renewed { .. }
    ));
    // Copy the data directory while the original is stopped, as a VM snapshot would.
    drop(original);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let (original, _) = e2e::agent(&plane, dir.path(), machine(1));
    let (clone, _) = e2e::agent(&plane, copy.path(), machine(1));
    let mut detected = false;
    for _ in 0..2 {
        advance(&plane, &clock, 60);
        let a = heartbeat(&original).await;
        let b = heartbeat(&clone).await;
        if matches!(a, Outcome::Offline(_)) || matches!(b, Outcome::Offline(_)) {
            detected = true;
            break;
        }
    }
    assert!(detected, "the clone was not refused within two heartbeats");
    let actions = plane.audit_actions(&id).await;
    assert!(
        actions.iter().any(|a| a == "license.clone_suspected"),
        "{actions:?}"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn air_gapped_activation_by_request_and_response_files() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, clock) = agent(&plane, dir.path(), machine(7));
    // On the box: a signed request, written to a file and carried out.
    let request = agent.activation_request(&id, &key).unwrap();
    let request_file = serde_json::to_string(&request).unwrap();
    // At the vendor: the operator submits it (no license key needed).
    let (status, response) = plane
        .call(
            "POST",
            &format!("/licenses/{id}/offline-activation"),
            Some(serde_json::from_str(&request_file).unwrap()),
        )
        .await;
    assert_eq!(status, 200, "{response}");
    // Back on the box: installed, verified, a year's lease.
    let status = agent
        .install_activation_response(response.to_string().as_bytes())
        .unwrap();
    assert!(status.runs, "{status:?}");
    assert_eq!(status.lease_expires_at, Some(status.now.plus(365 * DAY)));
    // Half a year without any network: still licensed (offline).
    clock.advance(180 * DAY);
    let status = agent.check();
    assert!(matches!(status.state, State::Offline { .. }), "{status:?}");
    // A response cannot be installed twice, nor one made for another request.
    assert!(
        agent
            .install_activation_response(response.to_string().as_bytes())
            .is_err()
    );
    let other = agent.activation_request(&id, &key).unwrap();
    let (_, second) = plane
        .call(
            "POST",
            &format!("/licenses/{id}/offline-activation"),
            Some(serde_json::to_value(&other).unwrap()),
        )
        .await;
    let again = agent.activation_request(&id, &key).unwrap();
    assert_ne!(again.nonce, other.nonce);
    assert!(
        agent
            .install_activation_response(second.to_string().as_bytes())
            .is_err()
    );
    assert!(agent.install_activation_response(b"not json").is_err());
}

#[tokio::test]
async fn a_store_held_by_the_running_service_is_busy_not_damaged() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let dir = tempfile::tempdir().unwrap();
    let (running, _) = agent(&plane, dir.path(), machine(1));
    running.activate(&plane.url, &id, &key).await.unwrap();
    let device = running.device_public_key();
    // A second process on the same directory (an operator running
    // `appliance activate` while the service runs) must not touch it.
    let (second, _) = agent(&plane, dir.path(), machine(1));
    assert!(second.busy().is_some());
    assert!(matches!(
        second.activate(&plane.url, &id, &key).await,
        Err(AgentError::Busy(_))
    ));
    assert_eq!(
        second.heartbeat_once().await,
        Outcome::Offline(second.busy().unwrap())
    );
    drop(second);
    // The running agent and its binding are untouched.
    assert_eq!(running.device_public_key(), device);
    assert!(matches!(
        running.heartbeat_once().await,
        Outcome::Renewed { .. }
    ));
    let entries: Vec<_> = std::fs::read_dir(dir.path().parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".damaged-"))
        .collect();
    assert!(entries.is_empty());
    assert!(
        !plane
            .audit_actions(&id)
            .await
            .contains(&"license.clone_suspected".to_owned())
    );
}

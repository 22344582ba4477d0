//! The appliance and the control plane over rustls (DESIGN.md: the appliance
//! pins a CA if configured): with the right CA pinned it activates and renews;
//! with another CA, or with the platform's roots, nothing gets through, and an
//! activated box whose connection is refused stays on its lease.

use appliance::agent::{AgentError, Outcome};
use appliance::eval::State;
use appliance::transport::HttpTransport;
use e2e::{Plane, TestCa, agent_with, machine};
use std::sync::Arc;

fn pinned(ca: &TestCa) -> Arc<HttpTransport> {
    Arc::new(HttpTransport::new(Some(ca.pem().as_bytes())).unwrap())
}

#[tokio::test]
async fn appliance_pins_the_control_planes_ca() {
    use control_plane::clock::Clock as _;
    let ca = TestCa::new("vendor CA");
    let stranger = TestCa::new("someone else's CA");
    let plane = Plane::start_tls(&ca).await;
    assert!(plane.url.starts_with("https://127.0.0.1:"));
    let (id, key) = plane.issue("acme").await;
    let clock = Arc::new(appliance::clock::ManualClock::new(plane.clock.now()));

    // Another CA pinned: the activation never reaches the API.
    let dir = tempfile::tempdir().unwrap();
    let wrong = agent_with(
        dir.path(),
        &plane.trust,
        pinned(&stranger),
        clock.clone(),
        machine(1),
    );
    let refused = wrong.activate(&plane.url, &id, &key).await.unwrap_err();
    let AgentError::Offline(why) = &refused else {
        panic!("{refused:?}")
    };
    assert!(why.contains("tls") || why.contains("certificate"), "{why}");
    assert!(
        !matches!(wrong.status().state, State::Active { .. }),
        "{:?}",
        wrong.status()
    );
    drop(wrong);
    // Without a pinned CA the platform's roots do not know the test CA either.
    let platform = agent_with(
        dir.path(),
        &plane.trust,
        Arc::new(HttpTransport::new(None).unwrap()),
        clock.clone(),
        machine(1),
    );
    assert!(platform.activate(&plane.url, &id, &key).await.is_err());
    drop(platform);
    assert_eq!(plane.status_of(&id).await, "issued");

    // The right CA: activation and heartbeats over TLS.
    let agent = agent_with(
        dir.path(),
        &plane.trust,
        pinned(&ca),
        clock.clone(),
        machine(1),
    );
    let status = agent.activate(&plane.url, &id, &key).await.unwrap();
    assert!(matches!(status.state, State::Active { .. }), "{status:?}");
    plane.advance(60);
    clock.advance(60);
    assert!(matches!(
        agent.heartbeat_once().await,
        Outcome::Renewed { seq: 2, .. }
    ));
    drop(agent);

    // The same box, now seeing a server certificate it does not trust (a
    // man in the middle): offline, the lease runs on.
    let intercepted = agent_with(
        dir.path(),
        &plane.trust,
        pinned(&stranger),
        clock.clone(),
        machine(1),
    );
    plane.advance(60);
    clock.advance(60);
    let Outcome::Offline(why) = intercepted.heartbeat_once().await else {
        panic!("a refused TLS handshake must read as offline")
    };
    assert!(!why.is_empty());
    assert!(matches!(intercepted.status().state, State::Active { .. }));
    assert_eq!(plane.status_of(&id).await, "active");
}

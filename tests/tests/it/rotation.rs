//! Signing-key rotation across the real API, with appliances that pin only the
//! root: K2 replaces K1 without any appliance update; revoking K1 reaches every
//! appliance on its next contact, and a K1 lease is refused from then on.

use appliance::agent::Outcome;
use appliance::transport::{HttpTransport, NetError, Response, Transport};
use e2e::{Plane, agent_with, machine};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// Records every response; can replay a recorded one instead of asking.
#[derive(Debug)]
struct Recorder {
    inner: HttpTransport,
    seen: Mutex<Vec<Response>>,
    replay: Mutex<Option<Response>>,
}

#[async_trait::async_trait]
impl Transport for Recorder {
    async fn post_json(
        &self,
        url: &str,
        bearer: &str,
        body: Vec<u8>,
    ) -> Result<Response, NetError> {
        if let Some(canned) = self.replay.lock().unwrap().clone() {
            return Ok(canned);
        }
        let response = self.inner.post_json(url, bearer, body).await?;
        self.seen.lock().unwrap().push(response.clone());
        Ok(response)
    }
}

fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder {
        inner: HttpTransport::new(None).unwrap(),
        seen: Mutex::new(vec![]),
        replay: Mutex::new(None),
    })
}

fn signer_of(response: &Response) -> String {
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    keys::inspect(body["lease"].as_str().unwrap())
        .unwrap()
        .header["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn keys_by_kid(plane: &Plane) -> Vec<Value> {
    let (status, body) = plane.call("GET", "/signing-keys", None).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn find<'a>(keys: &'a [Value], kid: &str) -> &'a Value {
    keys.iter().find(|k| k["kid"] == kid).unwrap()
}

#[tokio::test]
async fn rotation_needs_no_appliance_update_and_revocation_reaches_everyone() {
    use control_plane::clock::Clock as _;
    let plane = Plane::start().await;
    let mut boxes = vec![];
    for seed in 1..=2u8 {
        let (id, key) = plane.issue("acme").await;
        let dir = tempfile::tempdir().unwrap();
        let transport = recorder();
        let clock = Arc::new(appliance::clock::ManualClock::new(plane.clock.now()));
        let agent = agent_with(
            dir.path(),
            &plane.trust,
            transport.clone(),
            clock.clone(),
            machine(seed),
        );
        agent.activate(&plane.url, &id, &key).await.unwrap();
        boxes.push((agent, transport, clock, dir));
    }
    let k1 = signer_of(&boxes[0].1.seen.lock().unwrap()[0]);
    let k1_lease = boxes[0].1.seen.lock().unwrap()[0].clone();

    // K2: created and certified by the online root, then activated; K1 retires.
    let (status, created) = plane.call("POST", "/signing-keys", None).await;
    assert_eq!(status, 201, "{created}");
    let k2 = created["kid"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "pending");
    let (status, _) = plane
        .call("POST", &format!("/signing-keys/{k2}/activate"), None)
        .await;
    assert_eq!(status, 200);
    let listed = keys_by_kid(&plane).await;
    assert_eq!(find(&listed, &k1)["state"], "retired");
    assert_eq!(find(&listed, &k1)["live_leases"], 2);
    assert_eq!(find(&listed, &k2)["state"], "active");

    // Box A's next heartbeat: a K2 lease, verified with only the pinned root.
    let (a, a_transport, a_clock, _) = &boxes[0];
    plane.advance(60);
    a_clock.advance(60);
    assert!(matches!(a.heartbeat_once().await, Outcome::Renewed { .. }));
    assert_eq!(
        signer_of(a_transport.seen.lock().unwrap().last().unwrap()),
        k2
    );
    let listed = keys_by_kid(&plane).await;
    assert_eq!(find(&listed, &k1)["live_leases"], 1);
    assert_eq!(find(&listed, &k2)["live_leases"], 1);

    // K1 is revoked. Box B, offline all along, still runs on its K1 lease...
    let (status, body) = plane
        .call("POST", &format!("/signing-keys/{k1}/revoke"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (b, b_transport, b_clock, _) = &boxes[1];
    assert!(b.check().runs);
    // ...until its next contact, which carries the revocation: from then on its
    // K1 lease is dead, and it runs only on the K2 lease it was given.
    plane.advance(120);
    b_clock.advance(120);
    assert!(matches!(b.heartbeat_once().await, Outcome::Renewed { .. }));
    assert_eq!(
        signer_of(b_transport.seen.lock().unwrap().last().unwrap()),
        k2
    );
    let body: Value =
        serde_json::from_slice(&b_transport.seen.lock().unwrap().last().unwrap().body).unwrap();
    assert!(
        body["revoked_kids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == k1.as_str())
    );

    // A K1-signed lease offered afterwards is refused as revoked.
    *b_transport.replay.lock().unwrap() = Some(k1_lease);
    plane.advance(60);
    b_clock.advance(60);
    assert!(matches!(b.heartbeat_once().await, Outcome::Offline(_)));
    let status = b.status();
    assert!(
        status.last_error.as_deref().unwrap().contains("revoked"),
        "{status:?}"
    );
    assert!(status.runs);

    // The trust file and JWKS no longer offer K1.
    let (_, trust) = plane
        .call("GET", "/.well-known/licensing-trust.json", None)
        .await;
    assert!(
        trust["revoked_kids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == k1.as_str())
    );
    let (_, jwks) = plane.call("GET", "/.well-known/jwks.json", None).await;
    assert!(!jwks.to_string().contains(&k1));
    let actions: Vec<String> = {
        let (_, audit) = plane
            .call("GET", "/audit?action=signing.revoke", None)
            .await;
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["target"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(actions, std::slice::from_ref(&k1));
}

#[tokio::test]
async fn signing_key_refusals() {
    let plane = Plane::start().await;
    let listed = keys_by_kid(&plane).await;
    let active = listed
        .iter()
        .find(|k| k["state"] == "active" && k["role"] == "signing")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    // The active key can be neither retired nor revoked: activate another first.
    for action in ["retire", "revoke"] {
        let (status, body) = plane
            .call("POST", &format!("/signing-keys/{active}/{action}"), None)
            .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"], "invalid_key_state");
    }
    // An offline key cannot be activated before its certificate is attached,
    // and a certificate for another key is refused.
    let (status, offline) = plane
        .call(
            "POST",
            "/signing-keys",
            Some(serde_json::json!({"certify": "offline"})),
        )
        .await;
    assert_eq!(status, 201);
    let kid = offline["kid"].as_str().unwrap();
    assert!(offline["chain"].as_array().unwrap().is_empty());
    let (status, body) = plane
        .call("POST", &format!("/signing-keys/{kid}/activate"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    let other_chain = find(&listed, &active)["chain"].clone();
    let (status, body) = plane
        .call(
            "POST",
            &format!("/signing-keys/{kid}/certificate"),
            Some(serde_json::json!({"chain": other_chain})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = plane
        .call(
            "POST",
            &format!("/signing-keys/{kid}/certificate"),
            Some(serde_json::json!({"chain": ["garbage"]})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = plane
        .call("POST", "/signing-keys/nope/activate", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = plane
        .call(
            "POST",
            "/signing-keys",
            Some(serde_json::json!({"certify": "sideways"})),
        )
        .await;
    assert_eq!(status, 400);
    // A pending key may be retired, then never activated.
    let (status, _) = plane
        .call("POST", &format!("/signing-keys/{kid}/retire"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = plane
        .call("POST", &format!("/signing-keys/{kid}/activate"), None)
        .await;
    assert_eq!(status, 409);
}

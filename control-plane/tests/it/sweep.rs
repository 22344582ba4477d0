//! The health sweep over a fleet in mixed states: the first sweep makes exactly
//! the due transitions, each audited; the second changes and writes nothing.

use crate::support::*;
use axum::http::{Method, StatusCode};
use control_plane::http::wire::format_time;
use keys::proto::RequestKind::Activate;
use serde_json::{Value, json};

async fn issue_with_end(h: &Harness, end_in_days: Option<i64>) -> String {
    let mut body = json!({"customer": "acme", "entitlements": {"product": "gateway"}});
    if let Some(days) = end_in_days {
        body["subscription_ends_at"] = json!(format_time(h.clock_now().plus(days * DAY)));
    }
    let (status, value) = h
        .call(Method::POST, "/licenses", Some(&h.admin), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    value["license"]["id"].as_str().unwrap().to_owned()
}

async fn activate(h: &Harness, id: &str, seed: u8) {
    let key = h.act(id, "reveal", None).await["license_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut device = Device::new(seed);
    let req = device.request(Activate, id, &key, h.clock_now());
    assert_eq!(h.device(id, &key, &req).await.0, StatusCode::OK);
}

async fn snapshot(h: &Harness) -> (Vec<Value>, u64) {
    let (_, list) = h
        .call(Method::GET, "/licenses?limit=500", Some(&h.admin), None)
        .await;
    let (_, audit) = h
        .call(Method::GET, "/audit?limit=1000", Some(&h.admin), None)
        .await;
    let last_seq = audit["items"].as_array().unwrap().last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    (list["items"].as_array().unwrap().clone(), last_seq)
}

#[tokio::test]
async fn sweep_makes_exactly_the_due_transitions_once() {
    let h = Harness::new().await;
    // At T0: build the fleet.
    let lapsing = issue_with_end(&h, Some(10)).await; // active, subscription ends day 10
    activate(&h, &lapsing, 1).await;
    let grace_over = issue_with_end(&h, None).await; // grace until day 5
    activate(&h, &grace_over, 2).await;
    h.act(&grace_over, "revoke", Some(json!({"grace_days": 5})))
        .await;
    let grace_running = issue_with_end(&h, None).await; // grace until day 30
    activate(&h, &grace_running, 3).await;
    h.act(&grace_running, "revoke", Some(json!({"grace_days": 30})))
        .await;
    let healthy = issue_with_end(&h, Some(365)).await; // active, ends next year
    activate(&h, &healthy, 4).await;
    let unused_lapsed = issue_with_end(&h, Some(1)).await; // issued, ends day 1
    let expired = issue_with_end(&h, None).await;
    h.act(&expired, "revoke", Some(json!({"grace_days": 0})))
        .await;
    let suspended = issue_with_end(&h, None).await;
    h.act(&suspended, "suspend", None).await;

    // Day 20.
    h.clock.advance(20 * DAY);
    let (before, seq_before) = snapshot(&h).await;
    let report = h.act("health", "sweep", None).await;
    assert_eq!(report, json!({"examined": 7, "expired": 1, "suspended": 2}));
    let expected = [
        (&lapsing, "suspended"),
        (&grace_over, "expired"),
        (&grace_running, "grace"),
        (&healthy, "active"),
        (&unused_lapsed, "suspended"),
        (&expired, "expired"),
        (&suspended, "suspended"),
    ];
    for (id, status) in expected {
        assert_eq!(h.status_of(id).await, status, "{id}");
    }
    let (_, audit) = h
        .call(
            Method::GET,
            &format!("/audit?limit=1000&cursor={seq_before}"),
            Some(&h.admin),
            None,
        )
        .await;
    let mut written: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["metadata"]["reason"], "sweep");
            assert_eq!(r["at"], format_time(h.clock_now()));
            (
                r["target"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    written.sort();
    let mut want = vec![
        (lapsing.clone(), "license.suspend".to_owned()),
        (grace_over.clone(), "license.expire".to_owned()),
        (unused_lapsed.clone(), "license.suspend".to_owned()),
    ];
    want.sort();
    assert_eq!(written, want);
    // Untouched licenses were not rewritten.
    let (after, _) = snapshot(&h).await;
    for (old, new) in before.iter().zip(&after) {
        if [&grace_running, &healthy, &expired, &suspended]
            .iter()
            .any(|id| old["id"] == id.as_str())
        {
            assert_eq!(old, new);
        }
    }

    // The second sweep at the same time changes nothing and writes nothing.
    let (licenses_before, seq) = snapshot(&h).await;
    let report = h.act("health", "sweep", None).await;
    assert_eq!(report, json!({"examined": 7, "expired": 0, "suspended": 0}));
    let (licenses_after, seq_after) = snapshot(&h).await;
    assert_eq!(licenses_before, licenses_after);
    assert_eq!(seq, seq_after);
}

//! Rate limits through the router, with the client address a socket would give:
//! activations per IP, heartbeats per license, failed authentications per IP.
//! Each refusal is a 429 `rate_limited` with `Retry-After`, unsigned (so an
//! appliance reads it as offline), and other keys keep their own allowance.

use crate::support::{Device, Harness};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use control_plane::http::rate_limit::RateLimits;
use http_body_util::BodyExt as _;
use keys::proto::RequestKind::{Activate, Heartbeat};
use serde_json::Value;
use std::net::SocketAddr;
use tower::ServiceExt as _;

struct Reply {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Value,
}

async fn send(
    router: &axum::Router,
    from: [u8; 4],
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let mut request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((from, 40000))));
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        retry_after,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn limited(h: &Harness, limits: RateLimits) -> axum::Router {
    control_plane::http::router_with(
        h.cp.clone(),
        control_plane::http::Options {
            rate_limits: limits,
            ..control_plane::http::Options::default()
        },
    )
}

fn assert_limited(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"], "rate_limited");
    assert!(reply.body.get("lease").is_none() && reply.body.get("denial").is_none());
    let wait = reply.retry_after.unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
}

#[tokio::test]
async fn heartbeats_are_limited_per_license() {
    let h = Harness::new().await;
    let router = limited(
        &h,
        RateLimits {
            heartbeats_per_minute: 3,
            ..RateLimits::OFF
        },
    );
    let mut boxes = Vec::new();
    for seed in 1..=2 {
        let (id, key) = h.issue("acme").await;
        let mut device = Device::new(seed);
        let req = device.request(Activate, &id, &key, h.clock_now());
        assert_eq!(h.device(&id, &key, &req).await.0, StatusCode::OK);
        boxes.push((id, key, device));
    }
    let mut beat = |n: usize, from: [u8; 4]| {
        let (id, key, device) = &mut boxes[n];
        let req = device.request(Heartbeat, id, key, h.clock_now());
        let path = format!("/licenses/{id}/heartbeat");
        let key = key.clone();
        let router = router.clone();
        async move {
            send(
                &router,
                from,
                Method::POST,
                &path,
                &key,
                Some(serde_json::to_value(req).unwrap()),
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(beat(0, [10, 0, 0, 1]).await.status, StatusCode::OK);
    }
    // The limit follows the license, not the address.
    assert_limited(&beat(0, [10, 0, 0, 2]).await);
    assert_eq!(beat(1, [10, 0, 0, 1]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn activations_are_limited_per_address() {
    let h = Harness::new().await;
    let router = limited(
        &h,
        RateLimits {
            activations_per_minute: 2,
            ..RateLimits::OFF
        },
    );
    let (id, key) = h.issue("acme").await;
    let mut device = Device::new(1);
    let mut activate = |from: [u8; 4]| {
        let req = device.request(Activate, &id, &key, h.clock_now());
        let path = format!("/licenses/{id}/activate");
        let (router, key) = (router.clone(), key.clone());
        async move {
            send(
                &router,
                from,
                Method::POST,
                &path,
                &key,
                Some(serde_json::to_value(req).unwrap()),
            )
            .await
        }
    };
    for _ in 0..2 {
        assert_eq!(activate([10, 0, 0, 1]).await.status, StatusCode::OK);
    }
    assert_limited(&activate([10, 0, 0, 1]).await);
    assert_eq!(activate([10, 0, 0, 9]).await.status, StatusCode::OK);
    // Air-gapped activation shares the allowance.
    let offline = send(
        &router,
        [10, 0, 0, 1],
        Method::POST,
        &format!("/licenses/{id}/offline-activation"),
        &h.admin,
        Some(serde_json::json!({})),
    )
    .await;
    assert_limited(&offline);
}

#[tokio::test]
async fn an_address_guessing_tokens_is_shut_out() {
    let h = Harness::new().await;
    let router = limited(
        &h,
        RateLimits {
            auth_failures_per_minute: 3,
            ..RateLimits::OFF
        },
    );
    let guesser = [192, 0, 2, 7];
    // Three failures use up the allowance, the fourth is one too many.
    for n in 0..4 {
        let reply = send(
            &router,
            guesser,
            Method::GET,
            "/licenses",
            &format!("at_guess{n}"),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    // From then on the address is refused before its token is looked at,
    // even a valid one.
    assert_limited(&send(&router, guesser, Method::GET, "/licenses", "at_guess", None).await);
    assert_limited(&send(&router, guesser, Method::GET, "/licenses", &h.admin, None).await);
    // Health checks from the same address still get through.
    let health = send(&router, guesser, Method::GET, "/healthz", "", None).await;
    assert_eq!(health.status, StatusCode::OK);
    // Others are unaffected, and successes never count.
    for _ in 0..10 {
        let reply = send(
            &router,
            [192, 0, 2, 8],
            Method::GET,
            "/licenses",
            &h.admin,
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn console_password_guessing_from_one_address_is_shut_out_with_a_page() {
    let h = Harness::new().await;
    let router = limited(
        &h,
        RateLimits {
            auth_failures_per_minute: 3,
            ..RateLimits::OFF
        },
    );
    let from = |request: &mut Request<Body>| {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 9], 40000))));
    };
    let mut get = Request::get("/licensing/login")
        .body(Body::empty())
        .unwrap();
    from(&mut get);
    let response = router.clone().oneshot(get).await.unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let csrf = cookie.split_once('=').unwrap().1.to_owned();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let mut post = Request::post("/licensing/login")
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "csrf={csrf}&username=root-admin&password=guess"
            )))
            .unwrap();
        from(&mut post);
        let response = router.clone().oneshot(post).await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
            let content_type = response.headers()["content-type"].to_str().unwrap();
            assert!(content_type.starts_with("text/html"), "{content_type}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert!(String::from_utf8_lossy(&body).contains("Too many failed sign-ins"));
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429]);
}

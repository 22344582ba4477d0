//! The web console through the router, without a browser: sign-in, lockout,
//! sessions, CSRF, what each role sees and may do, the customer's banners, and
//! keys shown once. `tests/tests/it/console.rs` drives the same pages in
//! headless Chromium.

use crate::support::{DAY, Harness};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use control_plane::domain::user::Role;
use control_plane::service::Actor;
use http_body_util::BodyExt;
use std::collections::BTreeMap;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";

/// A browser without JavaScript: a cookie jar and forms.
struct Web<'h> {
    h: &'h Harness,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Page {
    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        let start = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field")
            + 19;
        let end = self.body[start..].find('"').unwrap();
        self.body[start..start + end].to_owned()
    }

    /// The text of the element with this id.
    fn element(&self, id: &str) -> String {
        let marker = format!("id=\"{id}\">");
        let start = self.body.find(&marker).expect(id) + marker.len();
        let end = self.body[start..].find('<').unwrap();
        self.body[start..start + end].to_owned()
    }

    fn has(&self, text: &str) -> bool {
        self.body.contains(text)
    }
}

impl<'h> Web<'h> {
    fn new(h: &'h Harness) -> Web<'h> {
        Web {
            h,
            cookies: BTreeMap::new(),
        }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut request = Request::builder().method(method).uri(path);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header(header::COOKIE, jar.join("; "));
        }
        let body = match form {
            Some(fields) => {
                request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                let encoded: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect();
                Body::from(encoded.join("&"))
            }
            None => Body::empty(),
        };
        let response = self
            .h
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        for cookie in response.headers().get_all(header::SET_COOKIE) {
            let text = cookie.to_str().unwrap();
            assert!(
                text.contains("HttpOnly") && text.contains("SameSite=Strict"),
                "{text}"
            );
            let (pair, _) = text.split_once(';').unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        if status.is_success() || status.is_client_error() {
            let csp = response.headers().get(header::CONTENT_SECURITY_POLICY);
            assert!(csp.is_some_and(|v| v.to_str().unwrap().contains("script-src 'self'")));
        }
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            location,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form)).await
    }

    async fn sign_in(&mut self, name: &str, password: &str) -> Page {
        let form = self.get("/licensing/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.csrf();
        self.post(
            "/licensing/login",
            &[("csrf", &csrf), ("username", name), ("password", password)],
        )
        .await
    }

    /// Signs in and returns the list page.
    async fn signed_in(h: &'h Harness, name: &str) -> (Web<'h>, Page) {
        let mut web = Web::new(h);
        let answer = web.sign_in(name, PASSWORD).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        assert_eq!(answer.location.as_deref(), Some("/licensing"));
        let list = web.get("/licensing").await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.body);
        (web, list)
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A harness whose users (root-admin, olga, sam, acme-ops) all have [`PASSWORD`].
async fn harness() -> Harness {
    let h = Harness::new().await;
    for user in h.cp.users().await.unwrap() {
        h.cp.set_password(&Actor::system(), &user.id, PASSWORD.into())
            .await
            .unwrap();
    }
    h
}

fn audit_actions(records: &[control_plane::domain::audit::AuditRecord]) -> Vec<&str> {
    records.iter().map(|r| r.event.action.as_str()).collect()
}

#[tokio::test]
async fn each_role_sees_the_pages_it_may_use_and_no_others() {
    let h = harness().await;
    let (id, _) = h.issue("acme").await;
    let card = format!("/licensing/licenses/{id}");
    let pages = [
        "/licensing",
        "/licensing/license-new",
        "/licensing/heartbeats",
        "/licensing/signing",
        "/licensing/settings",
        "/licensing/audit",
        card.as_str(),
        "/licensing/static/console.css",
    ];
    // 200 or 403 per page, in the order above.
    let cases = [
        ("root-admin", [200, 200, 200, 200, 200, 200, 200, 200]),
        ("sam", [200, 200, 200, 403, 403, 403, 200, 200]),
        ("olga", [200, 200, 200, 403, 403, 403, 200, 200]),
        ("acme-ops", [200, 403, 403, 403, 403, 403, 200, 200]),
    ];
    for (name, expected) in cases {
        let (mut web, list) = Web::signed_in(&h, name).await;
        assert!(list.has(&format!("{name} · ")), "{name}: whoami");
        assert_eq!(list.has(">Signing Keys<"), name == "root-admin", "{name}");
        assert_eq!(list.has(">New license<"), name != "acme-ops", "{name}");
        for (path, status) in pages.iter().zip(expected) {
            let page = web.get(path).await;
            assert_eq!(
                page.status.as_u16(),
                status,
                "{name} GET {path}: {}",
                page.body
            );
        }
        let card = web.get(&card).await;
        assert_eq!(
            card.has("Reveal key"),
            matches!(name, "root-admin" | "sam"),
            "{name}"
        );
        assert_eq!(
            card.has(">Revoke<"),
            matches!(name, "root-admin" | "sam"),
            "{name}"
        );
        assert_eq!(card.has("id=\"license-key\""), name != "acme-ops", "{name}");
        // What a role may not do is refused when posted, too.
        let csrf = card.csrf();
        let revoke = web
            .post(
                &format!("/licensing/licenses/{id}/revoke"),
                &[("csrf", &csrf), ("grace_days", "1")],
            )
            .await;
        if matches!(name, "olga" | "acme-ops") {
            assert_eq!(revoke.status, StatusCode::FORBIDDEN, "{name}");
            assert_ne!(h.status_of(&id).await, "grace", "{name}");
        } else {
            assert_eq!(revoke.status, StatusCode::SEE_OTHER, "{name}");
            assert_eq!(h.status_of(&id).await, "grace");
            h.act(&id, "reinstate", None).await;
        }
    }
    // Without a session every page leads to the sign-in page.
    let mut stranger = Web::new(&h);
    for path in &pages[..7] {
        let page = stranger.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location.as_deref(), Some("/licensing/login"));
    }
}

#[tokio::test]
async fn forms_without_the_session_csrf_token_are_refused() {
    let h = harness().await;
    let (id, _) = h.issue("acme").await;
    let (mut web, list) = Web::signed_in(&h, "sam").await;
    let csrf = list.csrf();
    let revoke = format!("/licensing/licenses/{id}/revoke");
    for form in [
        vec![("grace_days", "3")],
        vec![("csrf", ""), ("grace_days", "3")],
        vec![
            ("csrf", "forged-token-forged-token-forged-token"),
            ("grace_days", "3"),
        ],
    ] {
        let page = web.post(&revoke, &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{form:?}");
        assert!(page.has("CSRF check failed"));
    }
    // Another session's token is not this one's.
    let (_, other) = Web::signed_in(&h, "root-admin").await;
    let page = web
        .post(&revoke, &[("csrf", &other.csrf()), ("grace_days", "3")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(h.status_of(&id).await, "issued", "nothing was revoked");
    // The sign-in form has its own token.
    let mut fresh = Web::new(&h);
    let page = fresh
        .post(
            "/licensing/login",
            &[("username", "sam"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // And the genuine form works.
    let page = web
        .post(&revoke, &[("csrf", &csrf), ("grace_days", "3")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(h.status_of(&id).await, "grace");
}

#[tokio::test]
async fn repeated_sign_in_failures_lock_the_account_and_are_audited() {
    let h = harness().await;
    let mut web = Web::new(&h);
    for attempt in 1..=4 {
        let page = web.sign_in("sam", "not the password at all").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        assert!(page.has("Invalid username or password."));
    }
    let page = web.sign_in("sam", "not the password at all").await;
    assert!(page.has("this account is locked until"), "{}", page.body);
    // Locked: even the right password is refused, without being checked.
    let page = web.sign_in("sam", PASSWORD).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.has("locked until"));
    // Unknown users get the same answer as wrong passwords.
    let page = web.sign_in("nobody", PASSWORD).await;
    assert!(page.has("Invalid username or password."));
    let sam =
        h.cp.users()
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.name == "sam")
            .unwrap();
    let audit =
        h.cp.audit(&control_plane::store::AuditQuery {
            target: Some(sam.id.to_string()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    let actions = audit_actions(&audit);
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "user.login_failed")
            .count(),
        5
    );
    assert!(actions.contains(&"user.lockout"));
    // The lockout ends by itself...
    h.clock.advance(16 * 60);
    let page = web.sign_in("sam", PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    // ...and the counter starts again after a success.
    let sam = h.cp.store().user(&sam.id).await.unwrap().unwrap();
    assert_eq!(sam.failed_logins, 0);
    assert_eq!(sam.locked_until, None);
}

#[tokio::test]
async fn sessions_end_on_sign_out_idle_time_and_a_new_password() {
    let h = harness().await;
    let (mut web, list) = Web::signed_in(&h, "sam").await;
    let out = web
        .post("/licensing/logout", &[("csrf", &list.csrf())])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(web.get("/licensing").await.status, StatusCode::SEE_OTHER);

    let (mut web, _) = Web::signed_in(&h, "sam").await;
    h.clock.advance(29 * 60);
    assert_eq!(web.get("/licensing").await.status, StatusCode::OK);
    h.clock.advance(29 * 60);
    assert_eq!(
        web.get("/licensing").await.status,
        StatusCode::OK,
        "used: not idle"
    );
    h.clock.advance(31 * 60);
    assert_eq!(
        web.get("/licensing").await.status,
        StatusCode::SEE_OTHER,
        "idle"
    );

    let (mut web, _) = Web::signed_in(&h, "sam").await;
    let sam =
        h.cp.users()
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.name == "sam")
            .unwrap();
    h.cp.set_password(&Actor::system(), &sam.id, "another long password".into())
        .await
        .unwrap();
    assert_eq!(web.get("/licensing").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn issue_reveal_and_regenerate_show_each_key_once() {
    let h = harness().await;
    let (mut web, list) = Web::signed_in(&h, "sam").await;
    let form = web.get("/licensing/license-new").await;
    let issued = web
        .post(
            "/licensing/license-new",
            &[
                ("csrf", &form.csrf()),
                ("customer", "acme"),
                ("product", "appliance-pro"),
                ("seats", "25"),
                ("features", "ha, backup"),
                ("subscription_ends", "2031-01-31"),
            ],
        )
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let key = issued.element("new-license-key");
    assert!(key.starts_with("pk_"), "{key}");
    let key = key.as_str();
    let id = issued.element("license-id");
    assert!(id.starts_with("lic_"), "{id}");
    let card = web.get(&format!("/licensing/licenses/{id}")).await;
    assert!(!card.has(key), "the card never shows the key unasked");
    let masked = format!("pk_•••…•{}", &key[key.len() - 4..]);
    assert!(card.has(&masked), "{masked} in {}", card.body);
    assert!(card.has("seats: 25") && card.has("features: ha, backup"));
    assert!(
        card.has("2031-02-01 00:00 UTC"),
        "ends at the end of the day"
    );

    let revealed = web
        .post(
            &format!("/licensing/licenses/{id}/reveal"),
            &[("csrf", &list.csrf())],
        )
        .await;
    assert_eq!(revealed.status, StatusCode::OK);
    assert!(revealed.has(key) && revealed.has("Copy key"));
    assert!(!web.get(&format!("/licensing/licenses/{id}")).await.has(key));

    let new = web
        .post(
            &format!("/licensing/licenses/{id}/regenerate"),
            &[("csrf", &list.csrf())],
        )
        .await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.body);
    let new_key = new.element("new-license-key");
    let new_key = new_key.as_str();
    assert_ne!(new_key, key);
    let card = web.get(&format!("/licensing/licenses/{id}")).await;
    assert!(!card.has(new_key));
    assert!(card.has(&format!("pk_•••…•{}", &new_key[new_key.len() - 4..])));
    let audit =
        h.cp.audit(&control_plane::store::AuditQuery {
            target: Some(id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(
        audit_actions(&audit),
        ["license.issue", "license.reveal", "license.regenerate"]
    );
    assert!(audit.iter().all(|r| r.event.actor_name == "sam"));
}

#[tokio::test]
async fn a_customer_sees_its_banners_and_never_a_key() {
    let h = harness().await;
    let (ours, _) = h.issue("acme").await;
    let (expired, _) = h.issue("acme").await;
    let (theirs, _) = h.issue("globex").await;
    let (mut staff, list) = Web::signed_in(&h, "sam").await;
    let csrf = list.csrf();
    let page = staff
        .post(
            &format!("/licensing/licenses/{ours}/revoke"),
            &[("csrf", &csrf), ("grace_days", "3")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let card = staff.get(page.location.as_deref().unwrap()).await;
    assert!(card.has("License revoked.") && card.has(">GRACE<"));
    let until = control_plane::http::console::view_time(h.clock_now().plus(3 * DAY));
    assert!(
        card.has(&format!("id=\"grace-expires\">{until}")),
        "{}",
        card.body
    );
    staff
        .post(
            &format!("/licensing/licenses/{expired}/revoke"),
            &[("csrf", &csrf), ("grace_days", "0")],
        )
        .await;

    let (mut web, list) = Web::signed_in(&h, "acme-ops").await;
    assert!(list.has(&format!(
        "License in grace period. Service will stop on {until}. Contact your administrator."
    )));
    assert!(list.has("License expired. Contact your administrator to restore service."));
    assert!(list.has(&ours) && !list.has(&theirs));
    let card = web.get(&format!("/licensing/licenses/{ours}")).await;
    assert!(card.has("banner-grace") && !card.has("license-key") && !card.has("pk_"));
    assert!(!card.has("fingerprint") && !card.has("History"));
    let other = web.get(&format!("/licensing/licenses/{theirs}")).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_form_input_answers_a_page_not_a_failure() {
    let h = harness().await;
    let (id, _) = h.issue("acme").await;
    let (mut web, list) = Web::signed_in(&h, "root-admin").await;
    let csrf = list.csrf();
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, StatusCode);
    let cases: Vec<Case> = vec![
        (
            format!("/licensing/licenses/{id}/revoke"),
            vec![("grace_days", "lots")],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/licensing/licenses/{id}/revoke"),
            vec![("grace_days", "400")],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/licensing/licenses/{id}/reinstate"),
            vec![],
            StatusCode::CONFLICT,
        ),
        (
            format!("/licensing/licenses/{id}/rebind"),
            vec![("components", "{not json")],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/licensing/licenses/{id}/explode"),
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            "/licensing/licenses/lic_nope/revoke".into(),
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            "/licensing/license-new".into(),
            vec![("customer", ""), ("product", "x")],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/licensing/license-new".into(),
            vec![
                ("customer", "a"),
                ("product", "x"),
                ("subscription_ends", "soon"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/licensing/settings".into(),
            vec![("offline_window_days", "x")],
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, mut form, status) in cases {
        form.push(("csrf", &csrf));
        let page = web.post(&path, &form).await;
        assert_eq!(page.status, status, "POST {path} {form:?}: {}", page.body);
        assert!(page.body.contains("<html"), "an HTML page");
    }
    for path in [
        "/licensing?status=bogus",
        "/licensing/audit?from=yesterday",
        "/licensing/licenses/x",
    ] {
        let page = web.get(path).await;
        assert!(page.status.is_client_error(), "{path}");
    }
    assert_eq!(h.status_of(&id).await, "issued");
}

#[tokio::test]
async fn the_api_sets_console_passwords_and_refuses_weak_ones() {
    let h = harness().await;
    let (status, body) = h
        .call(
            Method::POST,
            "/users",
            Some(&h.admin),
            Some(serde_json::json!({"name": "nina", "role": "support", "password": "short"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = h
        .call(
            Method::POST,
            "/users",
            Some(&h.admin),
            Some(serde_json::json!({"name": "nina", "role": "support", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["user"]["console"], true);
    let (status, _) = h
        .call(
            Method::POST,
            "/users",
            Some(&h.admin),
            Some(serde_json::json!({"name": "nina", "role": "onboarding"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "names are unique");
    let id = body["user"]["id"].as_str().unwrap();
    let (status, _) = h
        .call(
            Method::PUT,
            &format!("/users/{id}/password"),
            Some(&h.support),
            Some(serde_json::json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .call(
            Method::PUT,
            &format!("/users/{id}/password"),
            Some(&h.admin),
            Some(serde_json::json!({"password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut web = Web::new(&h);
    assert_eq!(
        web.sign_in("nina", "a brand new passphrase").await.status,
        StatusCode::SEE_OTHER
    );
    let _ = Role::Support;
}

#[tokio::test]
async fn cookies_are_secure_when_the_server_speaks_tls() {
    let h = harness().await;
    for tls in [false, true] {
        let router = control_plane::http::router_with(
            h.cp.clone(),
            control_plane::http::Options {
                tls,
                ..control_plane::http::Options::default()
            },
        );
        let get = Request::get("/licensing/login")
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(get).await.unwrap();
        let cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned();
        let csrf_cookie = cookie.split(';').next().unwrap().to_owned();
        let csrf = csrf_cookie.split_once('=').unwrap().1.to_owned();
        let post = Request::post("/licensing/login")
            .header(header::COOKIE, &csrf_cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "csrf={csrf}&username=sam&password={}",
                urlencode(PASSWORD)
            )))
            .unwrap();
        let response = router.oneshot(post).await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let session = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with("cp_session="))
            .unwrap();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/licensing"] {
            assert!(session.contains(attribute), "{session}");
        }
        assert_eq!(session.contains("; Secure"), tls, "{session}");
        assert_eq!(cookie.contains("; Secure"), tls, "{cookie}");
    }
}

//! The console's pages: one handler per page or form. Handlers call the same
//! [`ControlPlane`](crate::service::ControlPlane) methods as the JSON API, so
//! permissions, audit and durability are the API's.

use super::view::{self, Chrome};
use super::{
    CsrfForm, LOGIN_COOKIE, PageError, PageResult, SESSION_COOKIE, Signed, cookie, html,
    same_token, set_cookie, with_csrf,
};
use crate::domain::ids::LicenseId;
use crate::domain::license::{State as LicenseState, Status};
use crate::domain::settings::{FingerprintPolicy, Settings};
use crate::domain::user::Permission;
use crate::http::AppState;
use crate::http::extract::{CanIssue, CanManage, CanRead, CanReveal, CanRevoke, StaffRead};
use crate::http::extract::{Path, Query, client_ip};
use crate::service::{IssueRequest, Login, Rebind};
use crate::store::{AuditQuery, KeyState, LicenseQuery};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use keys::UnixTime;
use serde::Deserialize;

/// Rows per page of the license list and the audit log.
const PAGE_SIZE: usize = 50;
/// Rows per group on the heartbeats page.
const HEARTBEAT_ROWS: usize = 50;

/// The address and cookies of a request that has no session yet.
pub struct Visitor {
    ip: String,
    login_token: Option<String>,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Visitor {
            ip: client_ip(parts),
            login_token: cookie(parts, LOGIN_COOKIE).map(str::to_owned),
        })
    }
}

fn random() -> Result<String, PageError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| crate::error::Error::Internal(e.to_string()))?;
    Ok(keys::b64::encode(bytes))
}

/// The sign-in page, with a fresh double-submit CSRF token in a cookie.
fn login_page(
    state: &AppState,
    status: StatusCode,
    error: Option<String>,
    username: String,
) -> PageResult {
    let token = random()?;
    let page = view::LoginPage {
        error,
        csrf: token.clone(),
        username,
    };
    let mut response = (
        status,
        axum::response::Html(askama::Template::render(&page)?),
    )
        .into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            LOGIN_COOKIE,
            &token,
            "/licensing/login",
            3600,
            state.secure_cookies,
        ),
    );
    Ok(response)
}

pub async fn login_form(State(state): State<AppState>) -> PageResult {
    login_page(&state, StatusCode::OK, None, String::new())
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

pub async fn login(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    axum::extract::Form(form): axum::extract::Form<LoginForm>,
) -> PageResult {
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let token_ok = visitor
        .login_token
        .as_deref()
        .is_some_and(|t| same_token(t, &form.csrf));
    if cross_site || !token_ok {
        return Err(PageError::Page(
            StatusCode::FORBIDDEN,
            "The sign-in form expired or did not come from this console (CSRF check failed). \
             Reload the sign-in page and try again."
                .into(),
        ));
    }
    match state
        .cp
        .login(form.username.trim(), &form.password, &visitor.ip)
        .await?
    {
        Login::Started { token } => {
            let mut response = Redirect::to("/licensing").into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(
                    SESSION_COOKIE,
                    token.expose(),
                    "/licensing",
                    crate::service::SESSION_MAX_SECS,
                    state.secure_cookies,
                ),
            );
            headers.append(
                header::SET_COOKIE,
                set_cookie(
                    LOGIN_COOKIE,
                    "",
                    "/licensing/login",
                    0,
                    state.secure_cookies,
                ),
            );
            Ok(response)
        }
        // 401, so that the failed-authentication rate limit counts it.
        Login::Refused => login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("Invalid username or password.".into()),
            form.username,
        ),
        Login::Locked { until } => login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some(format!(
                "Too many failed sign-ins: this account is locked until {}. \
                 An administrator can unlock it by setting a new password.",
                view::time(until)
            )),
            form.username,
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    CsrfForm { signed, .. }: CsrfForm<CanRead, CsrfOnly>,
) -> PageResult {
    state.cp.logout(&signed.actor, &signed.token).await?;
    let mut response = Redirect::to("/licensing/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/licensing", 0, state.secure_cookies),
    );
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
pub struct ListFilter {
    #[serde(default)]
    status: String,
    #[serde(default)]
    customer: String,
    #[serde(default)]
    after: String,
}

pub async fn licenses(
    State(state): State<AppState>,
    signed: Signed<CanRead>,
    Query(filter): Query<ListFilter>,
) -> PageResult {
    let status = match filter.status.as_str() {
        "" => None,
        s => Some(Status::parse(s).ok_or_else(|| {
            PageError::Page(StatusCode::BAD_REQUEST, format!("unknown status {s:?}"))
        })?),
    };
    let after = match filter.after.as_str() {
        "" => None,
        a => Some(LicenseId::parse(a).ok_or_else(|| {
            PageError::Page(StatusCode::BAD_REQUEST, "invalid page cursor".into())
        })?),
    };
    let customer = filter.customer.trim().to_owned();
    let page = state
        .cp
        .licenses(
            &signed.actor,
            LicenseQuery {
                status,
                customer: (!customer.is_empty()).then(|| customer.clone()),
                after,
                limit: PAGE_SIZE,
            },
        )
        .await?;
    let is_customer = signed.session.user.customer.is_some();
    let banners = if is_customer {
        page.items.iter().filter_map(view::banner).collect()
    } else {
        Vec::new()
    };
    html(&view::Licenses {
        chrome: Chrome::new("licenses", &signed.session),
        banners,
        statuses: Status::ALL
            .iter()
            .map(|s| (s.as_str(), s.as_str().to_uppercase()))
            .collect(),
        filter_status: filter.status,
        filter_customer: customer,
        rows: page.items.iter().map(view::Row::of).collect(),
        next: page.next.map(|id| id.to_string()),
    })
}

pub async fn license_new_form(signed: Signed<CanIssue>) -> PageResult {
    html(&view::LicenseNew {
        chrome: Chrome::new("license-new", &signed.session),
        error: None,
        form: view::NewLicenseForm::default(),
    })
}

with_csrf!(view::NewLicenseForm, CsrfOnly, SettingsForm);

/// The request a "new license" form describes, or what is wrong with it.
fn issue_request(form: &view::NewLicenseForm) -> Result<IssueRequest, String> {
    let mut entitlements = keys::Entitlements {
        product: form.product.trim().to_owned(),
        ..keys::Entitlements::default()
    };
    let seats = form.seats.trim();
    if !seats.is_empty() {
        let seats: i64 = seats
            .parse()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or("Seats must be a whole number.")?;
        entitlements.limits.insert("seats".into(), seats);
    }
    entitlements.features = form
        .features
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    let ends = form.subscription_ends.trim();
    let subscription_ends_at = if ends.is_empty() {
        None
    } else {
        Some(view::end_of_day(ends).ok_or("Subscription ends must be a date (YYYY-MM-DD).")?)
    };
    Ok(IssueRequest {
        customer: form.customer.trim().to_owned(),
        entitlements,
        subscription_ends_at,
        policy: Default::default(),
    })
}

pub async fn license_new(
    State(state): State<AppState>,
    CsrfForm { signed, form }: CsrfForm<CanIssue, view::NewLicenseForm>,
) -> PageResult {
    let chrome = Chrome::new("license-new", &signed.session);
    let retry = |error: String, form: view::NewLicenseForm| -> PageResult {
        let page = view::LicenseNew {
            chrome: chrome.clone(),
            error: Some(error),
            form,
        };
        Ok((
            StatusCode::BAD_REQUEST,
            axum::response::Html(askama::Template::render(&page)?),
        )
            .into_response())
    };
    let request = match issue_request(&form) {
        Ok(request) => request,
        Err(error) => return retry(error, form),
    };
    match state.cp.issue(&signed.actor, request).await {
        Ok((license, key)) => html(&view::NewKey {
            chrome,
            heading: "License issued",
            id: license.id.to_string(),
            key: key.expose().to_owned(),
        }),
        Err(crate::error::Error::BadRequest(message)) => retry(message, form),
        Err(e) => Err(e.into()),
    }
}

fn license_id(id: &str) -> Result<LicenseId, PageError> {
    LicenseId::parse(id)
        .ok_or_else(|| PageError::Page(StatusCode::NOT_FOUND, "no such license".into()))
}

#[derive(Debug, Default, Deserialize)]
pub struct CardQuery {
    #[serde(default)]
    done: String,
}

/// What a completed action's flash says (a fixed text per action: the query
/// string carries no free text into the page).
fn flash_for(done: &str) -> Option<String> {
    let text = match done {
        "revoke" => "License revoked.",
        "reinstate" => "License reinstated.",
        "rebind" => "License rebound: the next box to activate with its key binds to it.",
        "rebind-to" => "License rebound to the new box's fingerprint.",
        "suspend" => "License suspended.",
        "restore" => "License restored.",
        _ => return None,
    };
    Some(text.to_owned())
}

/// The actions `role` may take on a license in `state`, in the card's order.
fn actions_for(signed: &Signed<CanRead>, state: LicenseState) -> Vec<view::ActionLink> {
    if !signed.actor.allows(Permission::LicenseRevoke) {
        return Vec::new();
    }
    let status = state.status();
    let mut actions = Vec::new();
    let mut add = |action, label, danger| {
        actions.push(view::ActionLink {
            action,
            label,
            danger,
        })
    };
    if matches!(status, Status::Issued | Status::Active) {
        add("revoke", "Revoke", true);
    }
    if matches!(status, Status::Grace | Status::Expired) {
        add("reinstate", "Reinstate", false);
    }
    add("regenerate", "Regenerate key", true);
    add("rebind", "Rebind", false);
    if matches!(status, Status::Issued | Status::Active | Status::Grace) {
        add("suspend", "Suspend", true);
    }
    if status == Status::Suspended {
        add("restore", "Restore", false);
    }
    actions
}

async fn card_page(
    state: &AppState,
    signed: &Signed<CanRead>,
    id: &LicenseId,
    revealed: Option<String>,
    flash: Option<String>,
) -> PageResult {
    let license = state.cp.license(&signed.actor, id).await?;
    let staff = signed.actor.allows(Permission::LicenseRead);
    let key = staff.then(|| match revealed {
        Some(key) => view::KeyView {
            text: key,
            revealed: true,
        },
        None => view::KeyView {
            text: view::masked_key(license.key_hint.as_deref()),
            revealed: false,
        },
    });
    let audit = if staff {
        state
            .cp
            .audit(&AuditQuery {
                target: Some(id.to_string()),
                limit: 20,
                newest_first: true,
                ..AuditQuery::default()
            })
            .await?
            .items
    } else {
        Vec::new()
    };
    html(&view::Card {
        chrome: Chrome::new("licenses", &signed.session).with_flash(flash),
        banners: if staff {
            Vec::new()
        } else {
            view::banner(&license).into_iter().collect()
        },
        card: view::CardView::of(&license),
        key,
        can_reveal: signed.actor.allows(Permission::LicenseReveal),
        actions: actions_for(signed, license.state),
        audit: audit.iter().map(view::AuditRow::of).collect(),
    })
}

pub async fn card(
    State(state): State<AppState>,
    signed: Signed<CanRead>,
    Path(id): Path<String>,
    Query(query): Query<CardQuery>,
) -> PageResult {
    let id = license_id(&id)?;
    card_page(&state, &signed, &id, None, flash_for(&query.done)).await
}

/// Shows the key on the card, once, for this response only (audited).
pub async fn reveal(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { signed, .. }: CsrfForm<CanReveal, CsrfOnly>,
) -> PageResult {
    let id = license_id(&id)?;
    let key = state.cp.reveal(&signed.actor, &id).await?;
    let reader = Signed::<CanRead> {
        session: signed.session,
        actor: signed.actor,
        token: signed.token,
        _requirement: std::marker::PhantomData,
    };
    card_page(&state, &reader, &id, Some(key.expose().to_owned()), None).await
}

/// One of the card's actions.
#[derive(Debug, Clone, Copy)]
struct ActionInfo {
    action: &'static str,
    label: &'static str,
    explanation: &'static str,
    danger: bool,
}

fn action_info(action: &str) -> Option<ActionInfo> {
    let (action, label, explanation, danger) = match action {
        "revoke" => (
            "revoke",
            "Revoke",
            "The box keeps running through the grace period, then locks. Reinstate undoes it.",
            true,
        ),
        "reinstate" => (
            "reinstate",
            "Reinstate",
            "The license becomes active again; a locked box resumes on its next heartbeat.",
            false,
        ),
        "regenerate" => (
            "regenerate",
            "Regenerate key",
            "A new license key replaces the current one, which stops working at once. \
             The new key is shown once.",
            true,
        ),
        "rebind" => (
            "rebind",
            "Rebind",
            "The license moves to replacement hardware; the old box is refused with `rebound`.",
            false,
        ),
        "suspend" => (
            "suspend",
            "Suspend",
            "The subscription is not valid: the box is refused until the license is restored.",
            true,
        ),
        "restore" => (
            "restore",
            "Restore",
            "The subscription is paid: the license becomes active again.",
            false,
        ),
        _ => return None,
    };
    Some(ActionInfo {
        action,
        label,
        explanation,
        danger,
    })
}

fn unknown_action() -> PageError {
    PageError::Page(StatusCode::NOT_FOUND, "no such page".into())
}

/// The confirmation page of an action.
pub async fn confirm(
    State(state): State<AppState>,
    signed: Signed<CanRevoke>,
    Path((id, action)): Path<(String, String)>,
) -> PageResult {
    let info = action_info(&action).ok_or_else(unknown_action)?;
    let id = license_id(&id)?;
    let license = state.cp.license(&signed.actor, &id).await?;
    let settings = license.policy.apply(&state.cp.settings().await?);
    html(&view::Confirm {
        chrome: Chrome::new("licenses", &signed.session),
        id: id.to_string(),
        action: info.action,
        label: info.label,
        explanation: info.explanation,
        danger: info.danger,
        grace_days: settings.default_grace_days,
    })
}

/// Every action form's fields (each action reads the ones it needs).
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    grace_days: String,
    #[serde(default)]
    components: String,
    #[serde(default)]
    subscription_ends: String,
}
with_csrf!(ActionForm);

fn bad(message: impl Into<String>) -> PageError {
    PageError::Page(StatusCode::BAD_REQUEST, message.into())
}

/// Carries out a confirmed action, then back to the card (regenerate: to the
/// page that shows the new key once).
pub async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    CsrfForm { signed, form }: CsrfForm<CanRevoke, ActionForm>,
) -> PageResult {
    let info = action_info(&action).ok_or_else(unknown_action)?;
    let id = license_id(&id)?;
    let cp = &state.cp;
    let actor = &signed.actor;
    let done = match info.action {
        "revoke" => {
            let days = form.grace_days.trim();
            let grace = if days.is_empty() {
                None
            } else {
                Some(
                    days.parse::<u32>()
                        .map_err(|_| bad("Grace days must be a whole number from 0 to 365."))?,
                )
            };
            cp.revoke(actor, &id, grace).await?;
            "revoke"
        }
        "reinstate" => {
            cp.reinstate(actor, &id).await?;
            "reinstate"
        }
        "suspend" => {
            cp.suspend(actor, &id).await?;
            "suspend"
        }
        "restore" => {
            let ends = form.subscription_ends.trim();
            let ends = if ends.is_empty() {
                None
            } else {
                Some(view::end_of_day(ends).ok_or_else(|| bad("The date must be YYYY-MM-DD."))?)
            };
            cp.restore(actor, &id, ends).await?;
            "restore"
        }
        "rebind" => {
            let text = form.components.trim();
            if text.is_empty() {
                cp.rebind(actor, &id, Rebind::Unbind).await?;
                "rebind"
            } else {
                let components = parse_components(text)?;
                cp.rebind(actor, &id, Rebind::To(components)).await?;
                "rebind-to"
            }
        }
        "regenerate" => {
            let (license, key) = cp.regenerate(actor, &id).await?;
            return html(&view::NewKey {
                chrome: Chrome::new("licenses", &signed.session),
                heading: "New license key",
                id: license.id.to_string(),
                key: key.expose().to_owned(),
            });
        }
        _ => return Err(unknown_action()),
    };
    Ok(Redirect::to(&format!("/licensing/licenses/{id}?done={done}")).into_response())
}

/// The fingerprint components pasted into the rebind form: the JSON that
/// `appliance fingerprint` prints (its `components`, or the map itself).
fn parse_components(text: &str) -> Result<keys::proto::Components, PageError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("The fingerprint is not JSON: {e}")))?;
    let map = value.get("components").cloned().unwrap_or(value);
    let components: keys::proto::Components = serde_json::from_value(map).map_err(|_| {
        bad("The fingerprint must be a JSON object of component names to hashed values.")
    })?;
    if components.is_empty() {
        return Err(bad("The fingerprint has no components."));
    }
    Ok(components)
}

pub async fn signing(State(state): State<AppState>, signed: Signed<CanManage>) -> PageResult {
    signing_page(&state, &signed, None).await
}

async fn signing_page(
    state: &AppState,
    signed: &Signed<CanManage>,
    created: Option<String>,
) -> PageResult {
    let keys = state.cp.signing_keys().await?;
    let rows = keys
        .iter()
        .map(|k| {
            let r = &k.record;
            let signing = r.role == keys::keyfile::KeyRole::Signing;
            let actions = match (signing, r.state) {
                (true, KeyState::Pending) => vec!["activate", "revoke"],
                (true, KeyState::Active) => vec!["retire", "revoke"],
                (true, KeyState::Retired) => vec!["revoke"],
                _ => vec![],
            };
            view::KeyRow {
                kid: r.kid.clone(),
                role: if signing { "signing" } else { "root" },
                state: match r.state {
                    KeyState::Pending => "pending",
                    KeyState::Active => "active",
                    KeyState::Retired => "retired",
                    KeyState::Revoked => "revoked",
                },
                held: if r.is_online() {
                    "online (sealed)"
                } else {
                    "offline"
                },
                cert_end: view::time_or(k.cert_expires_at, "—"),
                live_leases: k.live_leases,
                actions: actions.into_iter().map(str::to_owned).collect(),
            }
        })
        .collect();
    html(&view::Signing {
        chrome: Chrome::new("signing", &signed.session),
        created,
        keys: rows,
    })
}

pub async fn create_signing_key(
    State(state): State<AppState>,
    CsrfForm { signed, .. }: CsrfForm<CanManage, CsrfOnly>,
) -> PageResult {
    let online = state.cp.has_online_root().await?;
    let created = state.cp.create_signing_key(&signed.actor, online).await?;
    let kid = &created.record.kid;
    let message = if online {
        format!("Created signing key {kid}, certified by the online root. Activate it when ready.")
    } else {
        format!(
            "Created signing key {kid}. Its public key for the offline ceremony: {}",
            created.public
        )
    };
    signing_page(&state, &signed, Some(message)).await
}

pub async fn signing_action(
    State(state): State<AppState>,
    Path((kid, action)): Path<(String, String)>,
    CsrfForm { signed, .. }: CsrfForm<CanManage, CsrfOnly>,
) -> PageResult {
    let cp = &state.cp;
    match action.as_str() {
        "activate" => cp.activate_signing_key(&signed.actor, &kid).await?,
        "retire" => cp.retire_signing_key(&signed.actor, &kid).await?,
        "revoke" => cp.revoke_signing_key(&signed.actor, &kid).await?,
        _ => return Err(unknown_action()),
    }
    Ok(Redirect::to("/licensing/signing").into_response())
}

pub async fn heartbeats(State(state): State<AppState>, signed: Signed<StaffRead>) -> PageResult {
    let fleet = state.cp.fleet().await?;
    let settings = state.cp.settings().await?;
    let now = state.cp.now();
    let interval = i64::from(settings.heartbeat_interval_secs);
    let stale_after = 3 * interval;
    let offline_after = 3600_i64.max(stale_after);
    let mut recent = Vec::new();
    let mut stale = Vec::new();
    let mut offline = Vec::new();
    for license in &fleet {
        let Some(seen) = &license.last_seen else {
            continue;
        };
        if !matches!(license.state.status(), Status::Active | Status::Grace) {
            continue;
        }
        let age = now.0 - seen.at.0;
        match age {
            a if a > offline_after => offline.push(license),
            a if a > stale_after => stale.push(license),
            _ => recent.push(license),
        }
    }
    let group = |id, title, mut list: Vec<&crate::domain::license::License>, newest_first| {
        list.sort_by_key(|l| l.last_seen.as_ref().map(|s| s.at.0).unwrap_or(0));
        if newest_first {
            list.reverse();
        }
        view::Group {
            id,
            title,
            total: list.len(),
            rows: list
                .into_iter()
                .take(HEARTBEAT_ROWS)
                .map(view::Row::of)
                .collect(),
        }
    };
    let clones = state
        .cp
        .audit(&AuditQuery {
            action: Some("license.clone_suspected".into()),
            limit: 20,
            newest_first: true,
            ..AuditQuery::default()
        })
        .await?
        .items
        .iter()
        .map(|r| view::Clone {
            at: view::time(r.at),
            license: r.event.target.clone(),
            ip: r.event.ip.clone(),
            why: r
                .event
                .metadata
                .get("reason")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned(),
        })
        .collect();
    html(&view::Heartbeats {
        chrome: Chrome::new("heartbeats", &signed.session),
        interval: view::span(interval),
        offline_after: view::span(offline_after),
        clones,
        groups: vec![
            group("recent", "Recent heartbeats", recent, true),
            group("stale", "Stale (missed heartbeats)", stale, false),
            group("offline", "Offline", offline, false),
        ],
    })
}

fn settings_view(s: &Settings) -> view::SettingsView {
    let days = |secs: u32| {
        if secs.is_multiple_of(86_400) {
            (secs / 86_400).to_string()
        } else {
            format!("{:.2}", f64::from(secs) / 86_400.0)
        }
    };
    let (exact, k) = match s.fingerprint_policy {
        FingerprintPolicy::Exact => (true, 3),
        FingerprintPolicy::KOfN { k } => (false, k),
    };
    view::SettingsView {
        offline_window_days: days(s.offline_window_secs),
        heartbeat_interval_secs: s.heartbeat_interval_secs,
        default_grace_days: s.default_grace_days,
        exact,
        k,
        clock_skew_tolerance_secs: s.clock_skew_tolerance_secs,
        airgap_offline_window_days: days(s.airgap_offline_window_secs),
    }
}

pub async fn settings(State(state): State<AppState>, signed: Signed<CanManage>) -> PageResult {
    html(&view::SettingsPage {
        chrome: Chrome::new("settings", &signed.session),
        error: None,
        s: settings_view(&state.cp.settings().await?),
    })
}

#[derive(Debug, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    csrf: String,
    offline_window_days: String,
    heartbeat_interval_secs: String,
    default_grace_days: String,
    fingerprint_policy: String,
    k: String,
    clock_skew_tolerance_secs: String,
    airgap_offline_window_days: String,
}

fn parse_settings(form: &SettingsForm) -> Result<Settings, String> {
    fn number(text: &str, name: &str) -> Result<u32, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("{name} must be a whole number."))
    }
    fn days(text: &str, name: &str) -> Result<u32, String> {
        let days: u32 = number(text, name)?;
        days.checked_mul(86_400)
            .ok_or_else(|| format!("{name} is too large."))
    }
    Ok(Settings {
        offline_window_secs: days(&form.offline_window_days, "Offline window")?,
        heartbeat_interval_secs: number(&form.heartbeat_interval_secs, "Heartbeat interval")?,
        default_grace_days: number(&form.default_grace_days, "Default revoke grace")?,
        fingerprint_policy: match form.fingerprint_policy.as_str() {
            "exact" => FingerprintPolicy::Exact,
            "k_of_n" => FingerprintPolicy::KOfN {
                k: number(&form.k, "k")?,
            },
            _ => return Err("Unknown fingerprint policy.".into()),
        },
        clock_skew_tolerance_secs: number(&form.clock_skew_tolerance_secs, "Clock-skew tolerance")?,
        airgap_offline_window_secs: days(
            &form.airgap_offline_window_days,
            "Air-gapped lease window",
        )?,
    })
}

pub async fn save_settings(
    State(state): State<AppState>,
    CsrfForm { signed, form }: CsrfForm<CanManage, SettingsForm>,
) -> PageResult {
    let chrome = Chrome::new("settings", &signed.session);
    let result = match parse_settings(&form) {
        Ok(settings) => match state.cp.put_settings(&signed.actor, settings).await {
            Ok(saved) => Ok(saved),
            Err(crate::error::Error::BadRequest(message)) => Err(message),
            Err(e) => return Err(e.into()),
        },
        Err(message) => Err(message),
    };
    match result {
        Ok(saved) => html(&view::SettingsPage {
            chrome: chrome.with_flash(Some("Settings saved.".into())),
            error: None,
            s: settings_view(&saved),
        }),
        Err(message) => {
            let current = state.cp.settings().await?;
            let page = view::SettingsPage {
                chrome,
                error: Some(message),
                s: settings_view(&current),
            };
            Ok((
                StatusCode::BAD_REQUEST,
                axum::response::Html(askama::Template::render(&page)?),
            )
                .into_response())
        }
    }
}

pub async fn audit(
    State(state): State<AppState>,
    signed: Signed<CanManage>,
    Query(filter): Query<view::AuditFilter>,
) -> PageResult {
    let day = |text: &str, end: bool| -> Result<Option<UnixTime>, PageError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let at = if end {
            view::end_of_day(text)
        } else {
            view::start_of_day(text)
        };
        at.map(Some).ok_or_else(|| bad("Dates must be YYYY-MM-DD."))
    };
    let page = state
        .cp
        .audit(&AuditQuery {
            target: Some(filter.target.trim().to_owned()).filter(|t| !t.is_empty()),
            action: Some(filter.action.trim().to_owned()).filter(|a| !a.is_empty()),
            from: day(&filter.from, false)?,
            until: day(&filter.until, true)?,
            after: filter.before,
            limit: PAGE_SIZE,
            newest_first: true,
        })
        .await?;
    html(&view::Audit {
        chrome: Chrome::new("audit", &signed.session),
        rows: page.items.iter().map(view::AuditRow::of).collect(),
        next: page.next,
        f: filter,
    })
}

//! The web console: server-rendered HTML under `/licensing` for staff and
//! customers, served by the same binary as the API (no CDN, no build step).
//!
//! - Sign-in is by user name and argon2id password ([`crate::service::Login`]);
//!   the session cookie is `HttpOnly`, `SameSite=Strict`, scoped to
//!   `/licensing`, and `Secure` when the server speaks TLS.
//! - Every form carries the session's CSRF token, compared in constant time
//!   ([`CsrfForm`]); the sign-in form carries a double-submit token of its own.
//!   Cross-site POSTs are also refused by their `Sec-Fetch-Site` header.
//! - Pages check permissions with the same [`Requirement`]s as the API, through
//!   the [`Signed`] extractor, and show only what the role may do.
//! - Every response carries a strict Content-Security-Policy (scripts and styles
//!   from this origin only), `X-Frame-Options: DENY` and `Cache-Control: no-store`.
//!
//! The console is not part of the JSON API, so its routes are plain axum routes,
//! outside the OpenAPI document (the `tidy` test scans only `src/http/*.rs`).

mod pages;
mod view;

use super::AppState;
use super::extract::{Requirement, client_ip};
use crate::domain::ids::SessionToken;
use crate::error::Error;
use crate::service::{Actor, Session};
use askama::Template;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use subtle::ConstantTimeEq;

/// The session cookie.
const SESSION_COOKIE: &str = "cp_session";
/// The sign-in form's double-submit CSRF cookie.
const LOGIN_COOKIE: &str = "cp_login";

/// The console's routes, to be merged into the API router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/licensing/login",
            get(pages::login_form).post(pages::login),
        )
        .route("/licensing/logout", post(pages::logout))
        .route("/licensing", get(pages::licenses))
        .route(
            "/licensing/license-new",
            get(pages::license_new_form).post(pages::license_new),
        )
        .route("/licensing/licenses/{id}", get(pages::card))
        .route("/licensing/licenses/{id}/reveal", post(pages::reveal))
        .route(
            "/licensing/licenses/{id}/{action}",
            get(pages::confirm).post(pages::act),
        )
        .route(
            "/licensing/signing",
            get(pages::signing).post(pages::create_signing_key),
        )
        .route(
            "/licensing/signing/{kid}/{action}",
            post(pages::signing_action),
        )
        .route("/licensing/heartbeats", get(pages::heartbeats))
        .route(
            "/licensing/settings",
            get(pages::settings).post(pages::save_settings),
        )
        .route("/licensing/audit", get(pages::audit))
        .route("/licensing/static/console.css", get(stylesheet))
        .route("/licensing/static/console.js", get(script))
        .layer(axum::middleware::map_response(security_headers))
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Headers every console response carries.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The value of cookie `name` in the request, if any.
fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: always `HttpOnly` and `SameSite=Strict`, `Secure`
/// when served over TLS.
fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    // Our values are base64url and fixed names, always valid header text.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether two tokens are equal, in constant time.
fn same_token(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Refuses a POST a browser says came from another site.
fn cross_site(parts: &Parts) -> bool {
    parts
        .headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
}

/// A console failure, rendered as a page.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: to the sign-in page.
    SignIn,
    /// A page with this status and message.
    Page(StatusCode, String),
}

impl PageError {
    fn forbidden() -> PageError {
        PageError::Page(
            StatusCode::FORBIDDEN,
            "Your role does not allow this.".into(),
        )
    }
}

impl From<Error> for PageError {
    fn from(e: Error) -> PageError {
        let api = super::error::ApiError::from(e);
        PageError::Page(api.status, api.message)
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> PageError {
        tracing::error!(error = %e, "template failed");
        PageError::Page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the server log".into(),
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => Redirect::to("/licensing/login").into_response(),
            PageError::Page(status, message) => {
                let page = view::Bare {
                    heading: status.canonical_reason().unwrap_or("Error").to_owned(),
                    message,
                };
                match page.render() {
                    Ok(html) => (status, axum::response::Html(html)).into_response(),
                    Err(_) => status.into_response(),
                }
            }
        }
    }
}

/// The console's time format (`YYYY-MM-DD HH:MM UTC`), for tests.
pub fn view_time(at: keys::UnixTime) -> String {
    view::time(at)
}

pub type PageResult = Result<Response, PageError>;

/// Renders a template as a 200 page.
fn html(template: &impl Template) -> PageResult {
    Ok(axum::response::Html(template.render()?).into_response())
}

/// A signed-in user whose role passes `R`. Without a live session: to the
/// sign-in page; with a role that fails `R`: a 403 page.
#[derive(Debug)]
pub struct Signed<R> {
    pub session: Session,
    pub actor: Actor,
    token: SessionToken,
    _requirement: PhantomData<R>,
}

impl<R: Requirement> FromRequestParts<AppState> for Signed<R> {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = cookie(parts, SESSION_COOKIE)
            .and_then(SessionToken::parse)
            .ok_or(PageError::SignIn)?;
        let session = state.cp.session(&token).await?.ok_or(PageError::SignIn)?;
        if !R::allows(session.user.role) {
            return Err(PageError::forbidden());
        }
        Ok(Signed {
            actor: Actor::user(&session.user, client_ip(parts)),
            session,
            token,
            _requirement: PhantomData,
        })
    }
}

/// A form with its `csrf` field.
pub trait WithCsrf {
    fn csrf(&self) -> &str;
}

/// A POSTed form from a signed-in user holding `R`, whose `csrf` field is the
/// session's token: anything else is refused with 403 before the handler runs.
#[derive(Debug)]
pub struct CsrfForm<R, T> {
    pub signed: Signed<R>,
    pub form: T,
}

impl<R, T> FromRequest<AppState> for CsrfForm<R, T>
where
    R: Requirement,
    T: DeserializeOwned + WithCsrf + Send,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let signed = Signed::<R>::from_request_parts(&mut parts, state).await?;
        if cross_site(&parts) {
            return Err(csrf_refused());
        }
        let req = Request::from_parts(parts, body);
        let axum::extract::Form(form) = axum::extract::Form::<T>::from_request(req, state)
            .await
            .map_err(|e| {
                // A form without its csrf field fails to parse: that is a CSRF refusal too.
                if e.body_text().contains("csrf") {
                    csrf_refused()
                } else {
                    PageError::Page(StatusCode::BAD_REQUEST, e.body_text())
                }
            })?;
        if !same_token(form.csrf(), &signed.session.csrf) {
            return Err(csrf_refused());
        }
        Ok(CsrfForm { signed, form })
    }
}

fn csrf_refused() -> PageError {
    PageError::Page(
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from this console (CSRF check failed). \
         Reload the page and try again."
            .into(),
    )
}

/// Implements [`WithCsrf`] for form structs with a `csrf: String` field.
macro_rules! with_csrf {
    ($($t:ty),* $(,)?) => {
        $(impl $crate::http::console::WithCsrf for $t {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })*
    };
}
use with_csrf;

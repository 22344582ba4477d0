//! The HTTP skin: the only module that knows axum and wire types. Each resource
//! module exposes `router()`, a `utoipa_axum` `OpenApiRouter` whose routes are
//! registered with `routes!` from their `#[utoipa::path]` annotations: that is
//! the only way a route is added (the `tidy` test refuses `.route(` here), so
//! the OpenAPI document ([`openapi`], served at `/openapi.json`) lists exactly
//! what is routed. [`router_with`] assembles them with the rate limits, body
//! limit, timeout, latency metrics and JSON fallbacks; [`serve`] (plain HTTP)
//! and [`tls::serve_tls`] bind it to a listener.

pub mod admin;
pub mod console;
pub mod error;
pub mod extract;
pub mod licenses;
pub mod observe;
pub mod openapi;
pub mod rate_limit;
pub mod signing;
pub mod tls;
pub mod wire;

use crate::service::ControlPlane;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use error::ApiError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;
use utoipa_axum::router::OpenApiRouter;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Requests taking longer than this are answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct AppState {
    pub cp: Arc<ControlPlane>,
    /// Console cookies are marked `Secure` (the server speaks TLS).
    pub secure_cookies: bool,
    /// Admission for heartbeats: at most this many are worked on at once, so
    /// that when a fleet saturates the CPU the rest wait here, not for the CPU,
    /// and an operator's revoke or a new box's activation queues behind a few
    /// heartbeats instead of every one in flight.
    pub heartbeat_slots: Arc<tokio::sync::Semaphore>,
}

/// Heartbeats worked on at once, per core: enough to keep every core busy
/// while some wait for their flush (docs/BENCHMARKS.md, "The second round").
const HEARTBEAT_SLOTS_PER_CORE: usize = 8;

fn heartbeat_slots() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from) * HEARTBEAT_SLOTS_PER_CORE
}

/// How the router is set up beyond the control plane it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Requests taking longer are answered 408.
    pub timeout: Duration,
    pub rate_limits: rate_limit::RateLimits,
    /// The server speaks TLS: console cookies are marked `Secure`.
    pub tls: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: REQUEST_TIMEOUT,
            rate_limits: rate_limit::RateLimits::default(),
            tls: false,
        }
    }
}

/// The whole API as a router with the default [`Options`], for `oneshot` tests
/// and for [`serve`].
pub fn router(cp: Arc<ControlPlane>) -> Router {
    router_with(cp, Options::default())
}

/// Every route, each with its OpenAPI operation.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::frame())
        .merge(licenses::router())
        .merge(admin::router())
        .merge(signing::router())
        .merge(observe::router())
}

/// The OpenAPI document of [`router`], generated from the same registrations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api().into_openapi();
    openapi::add_rate_limit_responses(&mut doc);
    doc
}

/// [`router`] with another request timeout (tests use a short one).
pub fn router_with_timeout(cp: Arc<ControlPlane>, timeout: Duration) -> Router {
    router_with(
        cp,
        Options {
            timeout,
            ..Options::default()
        },
    )
}

/// [`router`] with the given options.
pub fn router_with(cp: Arc<ControlPlane>, options: Options) -> Router {
    let timeout = options.timeout;
    let metrics = cp.metrics().clone();
    let (routes, _) = api().split_for_parts();
    routes
        .merge(console::router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Outside the timeout layer, so it sees (and dresses) the timeout's answer.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::map_response(json_timeout))
        // An over-limit request costs no body read, no timeout slot and no
        // store access.
        .layer(axum::middleware::from_fn_with_state(
            rate_limit::Limiter::new(options.rate_limits),
            rate_limit::enforce,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        // Outermost, so the latency includes every layer and the status is the
        // one the client gets (timeouts and 429s included).
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            observe::track_latency,
        ))
        .with_state(AppState {
            cp,
            secure_cookies: options.tls,
            heartbeat_slots: Arc::new(tokio::sync::Semaphore::new(heartbeat_slots())),
        })
}

/// The timeout layer answers with an empty body; give it the API's error format.
async fn json_timeout(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if response.status() == StatusCode::REQUEST_TIMEOUT
        && !response
            .headers()
            .contains_key(axum::http::header::CONTENT_TYPE)
    {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request took longer than {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
        .into_response();
    }
    response
}

/// Serves `router` (see [`router_with`]) as plain HTTP on `listener` until
/// `shutdown` completes, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

//! Operations endpoints: `GET /metrics` (Prometheus), `GET /readyz` (readiness)
//! and `GET /openapi.json` (this API's own description), plus the middleware that
//! times every request by its route template. `/healthz` (liveness) is in
//! [`super::admin`].
//!
//! All three endpoints are unauthenticated: they reveal no secret, no license
//! id and no customer name (metrics labels are closed sets and route
//! templates), so Prometheus and load balancers can reach them without a
//! token. Operators who do not want them public restrict them at the network
//! level (docs/operations.md "Monitoring").

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::wire::StatusBody;
use crate::metrics::Metrics;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// One `routes!` per path: `OpenApiRouter` registers each handler in the
/// router and in the OpenAPI document at once.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
}

/// The metrics in the Prometheus (OpenMetrics 1.0) text format; every series is
/// listed in docs/operations.md "Monitoring".
#[utoipa::path(
    get, path = "/metrics", tag = "public",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
    )
)]
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.cp.metrics_text().await,
    )
        .into_response()
}

/// Readiness: 200 when the store answers a read, its last flush succeeded, and
/// the active signing key's certificate verifies now; 503 otherwise. A load
/// balancer sends traffic only to a ready control plane; `/healthz` stays the
/// liveness check.
#[utoipa::path(
    get, path = "/readyz", tag = "public",
    responses(
        (status = 200, description = "Ready", body = StatusBody, example = json!({"status": "ready"})),
        (status = 503, description = "Not ready; the message says why", body = ErrorBody),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<axum::Json<StatusBody>, ApiError> {
    match state.cp.readiness().await {
        Ok(()) => Ok(axum::Json(StatusBody {
            status: "ready".to_owned(),
        })),
        Err(why) => {
            tracing::warn!(reason = %why, "not ready");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                why,
            ))
        }
    }
}

/// This API's OpenAPI 3.1 document, generated from the handlers (the same
/// document is checked in as docs/openapi.json).
#[utoipa::path(
    get, path = "/openapi.json", tag = "public",
    responses(
        (status = 200, description = "The OpenAPI document", body = Object),
    )
)]
async fn openapi_json() -> Response {
    // The document depends only on the code: build it once.
    static DOC: OnceLock<String> = OnceLock::new();
    let text = DOC.get_or_init(|| super::openapi().to_pretty_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], text.as_str()).into_response()
}

/// Times each request and records it under its route template (never the raw
/// path, so the number of series stays bounded), method and status class.
pub async fn track_latency(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics.record_request(
        route.as_deref(),
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

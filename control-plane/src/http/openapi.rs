//! The OpenAPI document's frame: title, version, tags and the two security
//! schemes. The paths and schemas come from the handlers themselves
//! (`#[utoipa::path]` on each, registered with `utoipa_axum::routes!`), so the
//! document served at `/openapi.json` and checked in as `docs/openapi.json`
//! cannot drift from the router.

use super::error::ErrorBody;
use utoipa::Modify;
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The security scheme of staff and customer API tokens (admin routes).
pub const API_TOKEN: &str = "api_token";
/// The security scheme of an appliance's license key (appliance routes).
pub const LICENSE_KEY: &str = "license_key";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Licensing control plane",
        description = "Issues licenses, answers appliance activations and heartbeats with signed leases, and runs the support actions, signing-key lifecycle, audit log and settings (DESIGN.md). Errors answer `{\"error\": code, \"message\": text}`; appliance refusals that the appliance may lock on are signed denials instead."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "licenses", description = "Issue, list and show licenses; the support actions; the health sweep"),
        (name = "appliance", description = "What appliances call with their license key: activation and heartbeat"),
        (name = "signing-keys", description = "The signing-key lifecycle (super_admin)"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "users", description = "Staff and customer users and their API tokens"),
        (name = "settings", description = "Fleet-wide settings"),
        (name = "public", description = "Unauthenticated: public keys, health, readiness, metrics and this document"),
    ),
    components(schemas(ErrorBody))
)]
struct Frame;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("API token")
                    .description(Some(
                        "A user's API token (`Authorization: Bearer <token>`); the route's permission is checked against the user's role",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            LICENSE_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("license key")
                    .description(Some(
                        "The appliance's license key (`Authorization: Bearer pk_...`), for its own license only; the request body is also signed by the device key",
                    ))
                    .build(),
            ),
        );
    }
}

/// The frame of the document, before the routes add their paths and schemas.
pub fn frame() -> OpenApi {
    let mut doc = Frame::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// Adds the `429 rate_limited` answer to every operation: the rate-limit layer
/// ([`super::rate_limit`]) sits in front of every route (activations per IP,
/// heartbeats per license, and any route for an address shut out after too
/// many failed authentications), so no handler annotation can say it.
pub fn add_rate_limit_responses(doc: &mut OpenApi) {
    use utoipa::openapi::path::Operation;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, header::HeaderBuilder};
    let response = ResponseBuilder::new()
        .description("Over a rate limit (`rate_limited`, unsigned: an appliance reads it as offline); retry after `Retry-After` seconds")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::Integer))
                .description(Some("Seconds until a request may succeed"))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        let operations: [&mut Option<Operation>; 4] = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .insert("429".to_owned(), response.clone().into());
        }
    }
}

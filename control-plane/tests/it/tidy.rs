//! Source checks: routes are added to the HTTP layer only through
//! `utoipa_axum`'s `OpenApiRouter::routes(routes!(...))`, so no route can be
//! served without being in the OpenAPI document. The scan covers the files of
//! `src/http/` itself; the HTML console (`src/http/console/`) routes with plain
//! axum on purpose: it is not part of the JSON API the document describes, and
//! it lives only under `/licensing` (`http::console::router`).

/// Calls that add a route without an OpenAPI operation.
const UNDOCUMENTED_ROUTING: &[&str] = &[".route(", ".route_service(", ".nest(", ".nest_service("];

/// `file:line` of every undocumented routing call in `source` (comments skipped).
fn undocumented_routes(name: &str, source: &str) -> Vec<String> {
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| UNDOCUMENTED_ROUTING.iter().any(|call| line.contains(call)))
        .map(|(i, line)| format!("{name}:{}: {}", i + 1, line.trim()))
        .collect()
}

#[test]
fn the_scan_finds_a_plain_route() {
    let found = undocumented_routes(
        "x.rs",
        "//! `.route(` in a comment is fine\nRouter::new()\n    .route(\"/x\", get(x))\n",
    );
    assert_eq!(found, ["x.rs:3: .route(\"/x\", get(x))"]);
}

#[test]
fn http_routes_only_through_openapi_router() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut found = Vec::new();
    let mut scanned = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            scanned += 1;
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            found.extend(undocumented_routes(
                &name,
                &std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    assert!(
        scanned >= 5,
        "scanned only {scanned} files in {}",
        dir.display()
    );
    assert!(
        found.is_empty(),
        "routes added outside OpenApiRouter::routes(routes!(..)), so missing from the OpenAPI document:\n{}",
        found.join("\n")
    );
}

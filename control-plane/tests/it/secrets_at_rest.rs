//! No secret lies in plaintext in the data directory (DESIGN.md "Tokens": "a
//! stolen data directory alone yields no signing key"; "Roles": API tokens are
//! stored hashed and "a stolen database yields" no license key in plaintext).
//!
//! A realistic session runs on the in-process control plane; then the store is
//! closed and every byte of every file under the data directory is searched for
//! each secret the session handled. Each search is paired with one that must
//! succeed (the secret's digest, the license ids, names), so the scan is shown to
//! read what the store wrote.

use crate::support::{DAY, Device, Harness};
use axum::http::{Method, StatusCode};
use control_plane::store::sled_store::SledStore;
use keys::proto::{RequestKind, license_key_digest};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The seed of the simulated appliance's device key: its private half must stay
/// on the box.
const DEVICE_SEED: u8 = 7;

/// What the session handled: secrets that must not be stored, and text that must.
#[derive(Default)]
struct Session {
    /// (label, secret) pairs.
    secrets: Vec<(String, String)>,
    /// (label, text) pairs the store is known to hold.
    stored: Vec<(String, String)>,
}

impl Session {
    /// A bearer secret: the secret itself must not be stored, its digest must.
    fn bearer(&mut self, label: &str, secret: &str) {
        self.secrets.push((label.to_owned(), secret.to_owned()));
        self.stored
            .push((format!("digest of {label}"), license_key_digest(secret)));
    }
}

/// Creates a user through the API; returns its token.
async fn create_user(h: &Harness, name: &str, role: &str, customer: Option<&str>) -> String {
    let (status, body) = h
        .call(
            Method::POST,
            "/users",
            Some(&h.admin),
            Some(json!({"name": name, "role": role, "customer": customer})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Drives the control plane as a vendor would for an afternoon; returns the data
/// directory's owner and what to look for. The control plane and its router are
/// dropped here.
async fn session() -> (tempfile::TempDir, Session) {
    let h = Harness::new().await;
    let mut s = Session::default();

    // Issue a small fleet.
    let mut licenses = Vec::new();
    for customer in ["acme", "acme", "globex", "initech"] {
        let (id, key) = h.issue(customer).await;
        s.bearer(&format!("license key of {id}"), &key);
        s.stored.push(("license id".into(), id.clone()));
        licenses.push((id, key));
    }
    s.stored.push(("customer name".into(), "initech".into()));

    // One appliance activates and heartbeats.
    let (active, key) = licenses[0].clone();
    let mut device = Device::new(DEVICE_SEED);
    let request = device.request(RequestKind::Activate, &active, &key, h.clock_now());
    let (status, body) = h.device(&active, &key, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..3 {
        h.clock.advance(60);
        let request = device.request(RequestKind::Heartbeat, &active, &key, h.clock_now());
        let (status, body) = h.device(&active, &key, &request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    s.stored
        .push(("device public key".into(), device.key.public().to_b64()));

    // Its key leaks and is regenerated; the box moves to the new one, and the old
    // one is refused.
    let regenerated = h.act(&active, "regenerate", None).await;
    let new_key = regenerated["license_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    s.bearer(&format!("regenerated license key of {active}"), &new_key);
    let request = device.request(RequestKind::Heartbeat, &active, &key, h.clock_now());
    let (status, body) = h.device(&active, &key, &request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let request = device.request(RequestKind::Heartbeat, &active, &new_key, h.clock_now());
    let (status, body) = h.device(&active, &new_key, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Support reveals another license's key.
    let (revealed_id, revealed_key) = &licenses[1];
    let revealed = h.act(revealed_id, "reveal", None).await;
    assert_eq!(revealed["license_key"], revealed_key.as_str());

    // New users, whose tokens work.
    for (name, role, customer) in [
        ("dana", "support", None),
        ("omar", "onboarding", None),
        ("globex-ops", "customer", Some("globex")),
    ] {
        let token = create_user(&h, name, role, customer).await;
        let (status, body) = h.call(Method::GET, "/licenses", Some(&token), None).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        s.bearer(&format!("API token of {name}"), &token);
        s.stored.push(("user name".into(), name.to_owned()));
    }
    for (label, token) in [
        ("admin", &h.admin),
        ("onboarding", &h.onboarding),
        ("support", &h.support),
        ("customer", &h.customer),
    ] {
        s.bearer(&format!("API token of the harness's {label} user"), token);
    }

    // Revoke and reinstate, suspend and restore, a settings change.
    let (revoked, _) = &licenses[2];
    h.act(revoked, "revoke", Some(json!({"grace_days": 5})))
        .await;
    h.act(revoked, "reinstate", None).await;
    h.act(&licenses[3].0, "suspend", None).await;
    h.clock.advance(DAY);
    h.act(&licenses[3].0, "restore", None).await;
    let (_, mut settings) = h.call(Method::GET, "/settings", Some(&h.admin), None).await;
    settings["default_grace_days"] = json!(7);
    let (status, body) = h
        .call(Method::PUT, "/settings", Some(&h.admin), Some(settings))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let Harness {
        router, cp, dir, ..
    } = h;
    drop(router);
    drop(cp);
    (dir, s)
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The files (and offsets) that hold `needle`.
fn holders(files: &[(PathBuf, Vec<u8>)], needle: &[u8]) -> Vec<String> {
    files
        .iter()
        .filter_map(|(path, bytes)| {
            find(bytes, needle).map(|at| format!("{} at byte {at}", path.display()))
        })
        .collect()
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Where the word "seed" (any case) appears, except inside random base64url text.
///
/// The store holds many random base64url strings (digests, nonces, ciphertexts,
/// salts; at least 22 characters each), and four random characters spell "seed"
/// once in about 17 million positions. Such a run is told apart from a name
/// (`seed`, `signing_seed`, `rootSeed`) by its length and its mixed case; a
/// 22-character random run without both cases is about as rare as a lottery win.
fn seed_words(files: &[(PathBuf, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, bytes) in files {
        for (at, window) in bytes.windows(4).enumerate() {
            if !window.eq_ignore_ascii_case(b"seed") {
                continue;
            }
            let start = bytes[..at]
                .iter()
                .rposition(|&b| !is_b64url(b))
                .map_or(0, |p| p + 1);
            let end = bytes[at..]
                .iter()
                .position(|&b| !is_b64url(b))
                .map_or(bytes.len(), |p| at + p);
            let run = &bytes[start..end];
            let random = run.len() >= 22
                && run.iter().any(u8::is_ascii_uppercase)
                && run.iter().any(u8::is_ascii_lowercase);
            if !random {
                found.push(format!(
                    "{} at byte {at}: {:?}",
                    path.display(),
                    String::from_utf8_lossy(run)
                ));
            }
        }
    }
    found
}

#[test]
fn the_data_directory_holds_no_secret_in_plaintext() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (dir, session) = runtime.block_on(session());
    // The group-commit flusher task holds the last handle on the sled database;
    // shutting its runtime down closes the database.
    drop(runtime);
    let data = dir.path().join("data");

    // Reopening proves the database was closed; flush once more for good measure.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = SledStore::open(&data).unwrap();
        store.flush().unwrap();
    });
    drop(runtime);

    let paths = files_under(&data);
    let files: Vec<(PathBuf, Vec<u8>)> = paths
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    assert!(
        files.iter().map(|(_, b)| b.len()).sum::<usize>() > 0,
        "the data directory is empty: {paths:?}"
    );

    // The key-encryption key lives beside the data directory, never inside it.
    let kek_files: Vec<&PathBuf> = paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "kek"))
        .collect();
    assert!(
        kek_files.is_empty(),
        "KEK files in the data directory: {kek_files:?}"
    );

    // The scan is not vacuous: what the store must hold, it finds.
    // Four issued license keys, one regenerated, three created users' tokens and
    // the harness's four.
    assert_eq!(session.secrets.len(), 12, "secrets searched for");
    assert!(session.stored.len() >= session.secrets.len());
    let mut problems = Vec::new();
    for (label, text) in &session.stored {
        assert!(!text.is_empty(), "{label} is empty");
        if holders(&files, text.as_bytes()).is_empty() {
            problems.push(format!("not found, though stored: {label} ({text})"));
        }
    }

    // Secrets: license keys (current, revealed and superseded) and API tokens,
    // searched without their prefix so that a stored bare body counts too.
    for (label, secret) in &session.secrets {
        let body = secret
            .strip_prefix("pk_")
            .or_else(|| secret.strip_prefix("at_"))
            .unwrap_or_else(|| panic!("{label} has no known prefix"));
        assert_eq!(body.len(), 43, "{label} is not 256 bits of base64url");
        for at in holders(&files, body.as_bytes()) {
            problems.push(format!("{label} in plaintext: {at}"));
        }
    }

    // The device key's private half stays on the box: neither its seed's
    // base64url nor its raw bytes reach the control plane.
    let seed = [DEVICE_SEED; 32];
    for (label, needle) in [
        (
            "device key seed (base64url)",
            keys::b64::encode(seed).into_bytes(),
        ),
        ("device key seed (raw)", seed.to_vec()),
    ] {
        for at in holders(&files, &needle) {
            problems.push(format!("{label}: {at}"));
        }
    }

    // Private keys are stored sealed, under names that do not say "seed".
    for at in seed_words(&files) {
        problems.push(format!("the word \"seed\": {at}"));
    }

    assert!(
        problems.is_empty(),
        "{} problems in {} files under {}:\n{}",
        problems.len(),
        files.len(),
        data.display(),
        problems.join("\n")
    );
}

#[test]
fn the_seed_scan_tells_names_from_random_text() {
    let file = |text: &str| vec![(PathBuf::from("f"), text.as_bytes().to_vec())];
    for named in [
        r#"{"seed":"AAAA"}"#,
        r#"{"signing_seed":"AAAA"}"#,
        r#"{"rootSeed":1}"#,
        "\0\0SEED\0",
        r#"{"kid":"k","private_key_seed_b64url_encoded":"x"}"#,
    ] {
        assert_eq!(seed_words(&file(named)).len(), 1, "{named}");
    }
    // Random base64url that happens to spell the word.
    let random = r#"{"digest":"Qx7-kT0seedL9a_ZpW2mBv4nYc1HrJ8uEfGs3dKo6iA"}"#;
    assert!(seed_words(&file(random)).is_empty(), "{random}");
}

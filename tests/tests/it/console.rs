//! The web console (`/licensing`) in a real browser: the `control-plane`
//! binary on loopback, one user per role with a password (created through the
//! admin API), and `tests/browser/console.mjs` driving headless Debian Chromium
//! through playwright-core (every role's login, issue, reveal and copy, revoke
//! with grace, the customer's banners, reinstate, regenerate, rebind, suspend
//! and restore, permissions, CSRF, screenshots).
//!
//! Chromium (`/usr/bin/chromium`), Node.js and the npm packages of
//! `tests/browser/` come from `scripts/install-test-deps`; when one is missing
//! the test fails and says so, it never passes without a browser.
//!
//! Screenshots go to `target/screenshots/`; with `UPDATE_SCREENSHOTS=1` they
//! are also copied to `docs/screenshots/`, which the docs show.

use e2e::procs::{ControlPlaneProc, PlaneOptions};
use serde_json::{Value, json};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `chromium` package puts the browser (console.mjs launches it).
const CHROMIUM: &str = "/usr/bin/chromium";

/// The hard limit on the browser script; it bounds itself at 3 minutes.
const NODE_LIMIT: Duration = Duration::from_secs(240);

/// The screenshots the docs show, by the names console.mjs gives them.
const SCREENSHOTS: [&str; 3] = ["license-list.png", "license-card.png", "signing-keys.png"];

/// The company of the customer user; console.mjs issues its licenses to it.
const CUSTOMER: &str = "Acme Corp";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace directory")
        .to_owned()
}

/// `target/` (the test executable is `target/debug/deps/it-...`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.ancestors()
        .nth(3)
        .expect("target/ above target/debug/deps/")
        .to_owned()
}

/// Fails, with the command that fixes it, when the browser or the script's
/// packages are not installed.
fn require_browser_deps(browser_dir: &Path) {
    let fix = "run scripts/install-test-deps (it installs Debian's chromium and \
               `npm ci` in tests/browser)";
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: {fix}"
    );
    assert!(
        browser_dir
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "{}/node_modules/playwright-core is missing: {fix}",
        browser_dir.display()
    );
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    assert!(
        node.as_ref().is_ok_and(|out| out.status.success()),
        "`node --version` fails ({node:?}): {fix}"
    );
}

/// One user per role, each with a password for the console's login; the
/// `CP_USERS` JSON that console.mjs reads.
fn create_users(plane: &ControlPlaneProc) -> Value {
    let mut users = serde_json::Map::new();
    for role in ["super_admin", "support", "onboarding", "customer"] {
        let name = format!("{}-console", role.replace('_', "-"));
        let password = format!("{role}-correct-horse-battery");
        let mut body = json!({ "name": name, "role": role, "password": password });
        let mut entry = json!({ "name": name, "password": password });
        if role == "customer" {
            body["customer"] = json!(CUSTOMER);
            entry["customer"] = json!(CUSTOMER);
        }
        let (status, answer) = plane.api_post("/users", &body);
        assert_eq!(
            status, 201,
            "POST /users for the {role} user, with a password, answered {status}: {answer} \
             (the console's users log in with the optional `password` field of POST /users)"
        );
        users.insert(role.to_owned(), entry);
    }
    Value::Object(users)
}

/// Runs `node console.mjs`, killed after [`NODE_LIMIT`]; its exit code (`None`
/// when killed) and its output, both streams in the order they were read.
fn run_browser_script(browser_dir: &Path, env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut command = Command::new("node");
    command
        .arg("console.mjs")
        .current_dir(browser_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start node console.mjs");
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + NODE_LIMIT;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            // Chromium is node's child: it ends when node's pipe to it closes.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    if !stderr.trim().is_empty() {
        output.push_str("\n--- stderr ---\n");
        output.push_str(&stderr);
    }
    (code, output)
}

#[test]
fn console_in_headless_chromium() {
    let browser_dir = workspace().join("tests/browser");
    require_browser_deps(&browser_dir);

    let plane = ControlPlaneProc::start(PlaneOptions::default());
    let users = create_users(&plane);

    let shots = target_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for name in SCREENSHOTS {
        let _ = std::fs::remove_file(shots.join(name));
    }

    let started = Instant::now();
    let (code, output) = run_browser_script(
        &browser_dir,
        &[
            ("CP_URL", plane.url.clone()),
            ("CP_USERS", users.to_string()),
            ("SCREENSHOT_DIR", shots.to_string_lossy().into_owned()),
        ],
    );
    assert!(
        code.is_some(),
        "node console.mjs was killed after {NODE_LIMIT:?}; its output:\n{output}"
    );
    assert_eq!(
        code,
        Some(0),
        "the browser test failed (the FAIL line says which step; screenshots in {}):\n{output}",
        shots.display()
    );
    println!(
        "node tests/browser/console.mjs passed in {:.1} s:\n{output}",
        started.elapsed().as_secs_f64()
    );
    for name in SCREENSHOTS {
        assert!(
            shots.join(name).is_file(),
            "console.mjs passed but wrote no {name} in {}",
            shots.display()
        );
    }

    if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let docs = workspace().join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        for name in SCREENSHOTS {
            std::fs::copy(shots.join(name), docs.join(name)).unwrap();
        }
        println!("copied the screenshots to {}", docs.display());
    }
}

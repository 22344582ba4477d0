//! The admin CLI end to end: the real `control-plane` binary serving a fresh
//! data directory on 127.0.0.1 port 0, and the same binary's client commands
//! (`licenses`, `signing-keys`, `audit list`, `users`, `settings`) against it.
//! Each test function starts its own server and covers one group of commands:
//! every command's `--json` answer and exit code, the human tables and `key:
//! value` lines of list and show, and the exit code of each kind of refusal.

use crate::support::Device;
use keys::UnixTime;
use keys::proto::RequestKind;
use serde_json::Value;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the server may take to start.
const START_DEADLINE: Duration = Duration::from_secs(30);
const DAY: i64 = 86_400;

/// Variables the binary reads, removed so that the environment running the
/// tests cannot leak in (a proxy would intercept 127.0.0.1 requests).
const ENV: [&str; 18] = [
    "CONTROL_PLANE_CONFIG",
    "CONTROL_PLANE_DATA_DIR",
    "CONTROL_PLANE_KEK_FILE",
    "CONTROL_PLANE_KEK",
    "CONTROL_PLANE_LOG_FORMAT",
    "CONTROL_PLANE_LISTEN",
    "CONTROL_PLANE_ISSUER",
    "CONTROL_PLANE_SERVER",
    "CONTROL_PLANE_TOKEN",
    "CONTROL_PLANE_TOKEN_FILE",
    "CONTROL_PLANE_CA_FILE",
    "CONTROL_PLANE_SWEEP_INTERVAL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_control-plane"));
    for name in ENV {
        command.env_remove(name);
    }
    command.env("CONTROL_PLANE_LOG", "off");
    command
}

/// How a client command gets its token.
#[derive(Debug, Clone, Copy)]
enum Auth<'a> {
    /// `CONTROL_PLANE_TOKEN`.
    Env(&'a str),
    /// `--token-file`.
    File(&'a Path),
    /// `--token` on the command line.
    Flag(&'a str),
    None,
}

/// What a client command did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {:?}; stderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts exit 0; returns the JSON on stdout.
    fn ok(&self) -> Value {
        assert_eq!(self.code, 0, "{self:?}");
        self.json()
    }

    /// Asserts `code`, the server's error code in the JSON on stdout, and the
    /// `control-plane: <code>: ` line on stderr.
    fn refused(&self, code: i32, error: &str) {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(self.json()["error"], error, "{self:?}");
        assert!(
            self.stderr
                .starts_with(&format!("control-plane: {error}: ")),
            "{self:?}"
        );
    }
}

/// Runs the binary's client command `args` against `server`.
fn cli(server: &str, auth: Auth, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut cmd = command();
    // The server comes from the variable here, and from --server in `Server::run`
    // for commands that also pass it on the command line.
    cmd.env("CONTROL_PLANE_SERVER", server).args(args);
    match auth {
        Auth::Env(token) => {
            cmd.env("CONTROL_PLANE_TOKEN", token);
        }
        Auth::File(path) => {
            cmd.arg("--token-file").arg(path);
        }
        Auth::Flag(token) => {
            cmd.args(["--token", token]);
        }
        Auth::None => {}
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A `control-plane serve` on a fresh data directory, killed when dropped.
#[derive(Debug)]
struct Server {
    child: Child,
    url: String,
    admin: String,
    /// A file holding the admin token (with the newline an editor leaves).
    admin_file: PathBuf,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), &[])
    }

    /// Initializes `dir/data` with `init --json` plus `init_args`, then serves it.
    fn start_in(dir: tempfile::TempDir, init_args: &[&str]) -> Server {
        let data = dir.path().join("data");
        let init = command()
            .args(["init", "--json", "--data-dir"])
            .arg(&data)
            .args(init_args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        let printed: Value = serde_json::from_slice(&init.stdout).unwrap();
        let admin = printed["admin_token"].as_str().unwrap().to_owned();
        let admin_file = dir.path().join("admin.token");
        std::fs::write(&admin_file, format!("{admin}\n")).unwrap();

        let mut child = command()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--sweep-interval",
                "0",
                "--data-dir",
            ])
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, announced) = mpsc::channel();
        // Reads stdout to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        let mut server = Server {
            child,
            url: String::new(),
            admin,
            admin_file,
            dir,
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match announced.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        server.url = addr.to_owned();
                        return server;
                    }
                }
                Err(e) => panic!("the server did not announce its address: {e}"),
            }
        }
    }

    /// A client command with `--server` on the command line (at the end: the
    /// connection options are global to the command).
    fn run(&self, auth: Auth, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--server", self.url.as_str()]);
        cli("http://127.0.0.1:9/ignored", auth, &all, None)
    }

    /// As the first super_admin, token from the environment.
    fn admin(&self, args: &[&str]) -> Run {
        cli(&self.url, Auth::Env(&self.admin), args, None)
    }

    fn admin_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        cli(&self.url, Auth::Env(&self.admin), args, Some(stdin))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-shot HTTP server on 127.0.0.1 that answers `status` to the first
/// request; the thread returns that request's head.
fn answer_once(
    status: &str,
    headers: &str,
    body: &str,
) -> (String, std::thread::JoinHandle<String>) {
    use std::io::Read as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let response = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        stream.write_all(response.as_bytes()).unwrap();
        String::from_utf8(head).unwrap()
    });
    (url, thread)
}

fn time(v: &Value) -> i64 {
    UnixTime::parse_rfc3339(v.as_str().unwrap()).unwrap().secs()
}

fn audit_actions(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn license_commands() {
    let s = Server::start();
    let file = Auth::File(&s.admin_file);

    // issue, from flags: the license and its key, once.
    let issued = s
        .admin(&[
            "licenses",
            "issue",
            "--customer",
            "acme",
            "--product",
            "gateway",
            "--features",
            "vpn,ids",
            "--limit",
            "seats=25",
            "--subscription-ends-at",
            "2099-01-01T00:00:00Z",
            "--default-grace-days",
            "4",
            "--json",
        ])
        .ok();
    let id = issued["license"]["id"].as_str().unwrap().to_owned();
    let key = issued["license_key"].as_str().unwrap().to_owned();
    assert!(id.starts_with("lic_"), "{issued}");
    assert!(key.starts_with("pk_"), "{issued}");
    let license = &issued["license"];
    assert_eq!(license["status"], "issued");
    assert_eq!(license["customer"], "acme");
    assert_eq!(
        license["entitlements"],
        serde_json::json!({"product": "gateway", "features": ["vpn", "ids"], "limits": {"seats": 25}})
    );
    assert_eq!(license["policy"]["default_grace_days"], 4);
    assert_eq!(license["subscription_ends_at"], "2099-01-01T00:00:00Z");

    // issue, entitlements as JSON from standard input; human output.
    let other = s.admin_stdin(
        &[
            "licenses",
            "issue",
            "--customer",
            "globex",
            "--entitlements-json",
            "-",
        ],
        br#"{"product": "scanner", "features": ["ocr"]}"#,
    );
    assert_eq!(other.code, 0, "{other:?}");
    assert!(other.stdout.contains("customer: globex\n"), "{other:?}");
    assert!(
        other.stdout.contains("entitlements.product: scanner\n"),
        "{other:?}"
    );
    let other_id = other
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    assert!(
        other
            .stdout
            .lines()
            .any(|l| l.starts_with("license_key: pk_")),
        "{other:?}"
    );

    // list: JSON, filters, and the table.
    let all = s.run(file, &["licenses", "list", "--json"]).ok();
    let ids: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id.as_str()) && ids.contains(&other_id.as_str()));
    let globex = s
        .admin(&["licenses", "list", "--customer", "globex", "--json"])
        .ok();
    assert_eq!(globex["items"].as_array().unwrap().len(), 1);
    assert_eq!(globex["items"][0]["id"], other_id.as_str());
    let page = s
        .admin(&["licenses", "list", "--limit", "1", "--json"])
        .ok();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_string());
    let table = s.admin(&["licenses", "list"]);
    assert_eq!(table.code, 0, "{table:?}");
    let mut lines = table.stdout.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("ID  ")
            && header.contains("CUSTOMER")
            && header.contains("STATUS")
            && header.contains("LAST HEARTBEAT"),
        "{header}"
    );
    let row: Vec<&str> = lines
        .find(|l| l.starts_with(&id))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..4], [id.as_str(), "acme", "issued", "gateway"]);

    // show.
    let shown = s.admin(&["licenses", "show", &id]);
    assert_eq!(shown.code, 0, "{shown:?}");
    assert!(
        shown.stdout.starts_with(&format!("id: {id}\n")),
        "{shown:?}"
    );
    for line in [
        "status: issued",
        "entitlements.limits.seats: 25",
        "entitlements.features: vpn, ids",
    ] {
        assert!(shown.stdout.lines().any(|l| l == line), "{line}: {shown:?}");
    }
    assert_eq!(
        s.admin(&["licenses", "show", &id, "--json"]).ok()["id"],
        id.as_str()
    );

    // revoke: the license's own default grace (4 days), then 3 days.
    let revoked = s.admin(&["licenses", "revoke", &id, "--json"]).ok();
    assert_eq!(revoked["status"], "grace");
    assert_eq!(
        time(&revoked["grace_expires_at"]) - time(&revoked["updated_at"]),
        4 * DAY
    );
    let revoked = s
        .admin(&["licenses", "revoke", &id, "--grace-days", "3", "--json"])
        .ok();
    assert_eq!(revoked["status"], "grace");
    assert_eq!(
        time(&revoked["grace_expires_at"]) - time(&revoked["updated_at"]),
        3 * DAY
    );

    // reinstate: never bound, so back to issued; a second time is refused.
    let reinstated = s.admin(&["licenses", "reinstate", &id, "--json"]).ok();
    assert_eq!(reinstated["status"], "issued");
    assert!(reinstated["grace_expires_at"].is_null());
    s.admin(&["licenses", "reinstate", &id, "--json"])
        .refused(7, "invalid_transition");

    // offline-activation: an air-gapped box's request, from a file.
    let mut device = Device::new(7);
    let request = device.request(RequestKind::Activate, &id, &key, UnixTime::now());
    let request_file = s.path("req.json");
    std::fs::write(&request_file, serde_json::to_vec(&request).unwrap()).unwrap();
    let response = s
        .admin(&[
            "licenses",
            "offline-activation",
            &id,
            "--request",
            request_file.to_str().unwrap(),
            "--json",
        ])
        .ok();
    assert!(response["lease"].as_str().unwrap().starts_with("ey"));
    assert!(!response["chain"].as_array().unwrap().is_empty());
    let active = s.admin(&["licenses", "show", &id, "--json"]).ok();
    assert_eq!(active["status"], "active");
    assert_eq!(active["binding"]["device_key"], request.device_key.as_str());
    // A renewal, the request on standard input, the response into a file.
    let request = device.request(RequestKind::Activate, &id, &key, UnixTime::now());
    let out_file = s.path("resp.json");
    let renewed = s.admin_stdin(
        &[
            "licenses",
            "offline-activation",
            &id,
            "--request",
            "-",
            "--out",
            out_file.to_str().unwrap(),
        ],
        &serde_json::to_vec(&request).unwrap(),
    );
    assert_eq!(renewed.code, 0, "{renewed:?}");
    let written: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert!(written["lease"].is_string(), "{written}");

    // suspend, restore.
    assert_eq!(
        s.admin(&["licenses", "suspend", &id, "--json"]).ok()["status"],
        "suspended"
    );
    s.admin(&["licenses", "suspend", &id, "--json"])
        .refused(7, "invalid_transition");
    assert_eq!(
        s.admin(&["licenses", "restore", &id, "--json"]).ok()["status"],
        "active"
    );

    // regenerate: a new key; reveal shows it.
    let regenerated = s.admin(&["licenses", "regenerate", &id, "--json"]).ok();
    let new_key = regenerated["license_key"].as_str().unwrap();
    assert!(new_key.starts_with("pk_"));
    assert_ne!(new_key, key);
    assert_eq!(regenerated["license"]["id"], id.as_str());
    let revealed = s.run(file, &["licenses", "reveal", &id, "--json"]).ok();
    assert_eq!(revealed["license_key"], new_key);
    let revealed = s.admin(&["licenses", "reveal", &id]);
    assert_eq!(revealed.stdout, format!("license_key: {new_key}\n"));

    // rebind: `appliance fingerprint` output as it is; one read for another
    // license is refused before sending; unbind.
    let components = serde_json::json!({"machine_id": "m9", "mac": "a9", "cpu": "xeon-8"});
    let fp = s.path("fp.json");
    std::fs::write(
        &fp,
        serde_json::json!({"license_id": id, "components": components, "digest": "x"}).to_string(),
    )
    .unwrap();
    let rebound = s
        .admin(&[
            "licenses",
            "rebind",
            &id,
            "--fingerprint",
            fp.to_str().unwrap(),
            "--json",
        ])
        .ok();
    assert_eq!(rebound["binding"]["components"], components);
    assert!(rebound["binding"]["device_key"].is_null());
    let wrong = s.admin(&[
        "licenses",
        "rebind",
        &other_id,
        "--fingerprint",
        fp.to_str().unwrap(),
    ]);
    assert_eq!(wrong.code, 2, "{wrong:?}");
    let unbound = s
        .admin(&["licenses", "rebind", &id, "--unbind", "--json"])
        .ok();
    assert!(unbound["binding"]["components"].is_null());
    assert_eq!(s.admin(&["licenses", "rebind", &id]).code, 2);

    // sweep: both licenses examined, nothing due.
    let swept = s.admin(&["licenses", "sweep", "--json"]).ok();
    assert_eq!(
        swept,
        serde_json::json!({"examined": 2, "expired": 0, "suspended": 0})
    );

    // Every action above is in the license's audit trail.
    let trail = s.admin(&["audit", "list", "--target", &id, "--json"]).ok();
    let actions = audit_actions(&trail);
    for action in [
        "license.issue",
        "license.revoke",
        "license.reinstate",
        "license.activate",
        "license.suspend",
        "license.restore",
        "license.regenerate",
        "license.reveal",
        "license.rebind",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }

    // An unknown license: 6, whatever the action.
    let unknown = "lic_00000000000000000000000000000000";
    s.admin(&["licenses", "show", unknown, "--json"])
        .refused(6, "not_found");
    s.admin(&["licenses", "revoke", unknown, "--json"])
        .refused(6, "not_found");
    // An id that is not one cannot reach another route.
    s.admin(&["licenses", "show", "../users", "--json"])
        .refused(6, "not_found");
}

#[test]
fn signing_key_commands() {
    let s = Server::start();
    let keys_of = |s: &Server| -> Vec<(String, String, String)> {
        s.admin(&["signing-keys", "list", "--json"]).ok()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["kid"].as_str().unwrap().to_owned(),
                    k["role"].as_str().unwrap().to_owned(),
                    k["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let state_of = |s: &Server, kid: &str| {
        keys_of(s)
            .into_iter()
            .find(|k| k.0 == kid)
            .map(|k| k.2)
            .unwrap()
    };
    let before = keys_of(&s);
    assert_eq!(before.len(), 2);
    let old = before
        .iter()
        .find(|k| k.1 == "signing" && k.2 == "active")
        .unwrap()
        .0
        .clone();

    // create: certified by the online root, pending.
    let created = s.admin(&["signing-keys", "create", "--json"]).ok();
    let kid = created["kid"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "pending");
    let chain: Vec<String> = created["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(chain.len(), 1);
    assert_eq!(state_of(&s, &kid), "pending");
    let table = s.admin(&["signing-keys", "list"]);
    assert!(
        table.stdout.starts_with("KID  ") && table.stdout.contains("STATE"),
        "{table:?}"
    );
    let row: Vec<&str> = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&kid))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..3], [kid.as_str(), "signing", "pending"]);

    // attach-certificate: a chain file as `keys certify` writes one (a token
    // and a newline). The control plane's root is online and not exportable,
    // so the certificate is the one it made for this key.
    let cert = s.path("k2.cert");
    std::fs::write(&cert, format!("{}\n", chain.join("\n"))).unwrap();
    let attached = s
        .admin(&[
            "signing-keys",
            "attach-certificate",
            &kid,
            "--certificate",
            cert.to_str().unwrap(),
            "--json",
        ])
        .ok();
    assert_eq!(attached, serde_json::json!({"kid": kid, "certified": true}));
    // Garbage, and a valid certificate of another key: 8 with the server's error.
    s.admin_stdin(
        &[
            "signing-keys",
            "attach-certificate",
            &kid,
            "--certificate",
            "-",
            "--json",
        ],
        b"not.a.certificate\n",
    )
    .refused(8, "bad_request");
    let offline = s
        .admin(&["signing-keys", "create", "--offline", "--json"])
        .ok();
    let offline_kid = offline["kid"].as_str().unwrap().to_owned();
    assert_eq!(offline["chain"], serde_json::json!([]));
    let wrong = s.admin(&[
        "signing-keys",
        "attach-certificate",
        &offline_kid,
        "--certificate",
        cert.to_str().unwrap(),
        "--json",
    ]);
    wrong.refused(8, "bad_request");
    assert!(
        wrong.json()["message"]
            .as_str()
            .unwrap()
            .contains("another key")
    );
    // No certificate yet: refused by state.
    s.admin(&["signing-keys", "activate", &offline_kid, "--json"])
        .refused(7, "invalid_key_state");

    // activate: the old key is retired in the same step.
    let activated = s.admin(&["signing-keys", "activate", &kid, "--json"]).ok();
    assert_eq!(
        activated,
        serde_json::json!({"kid": kid, "state": "active"})
    );
    assert_eq!(state_of(&s, &kid), "active");
    assert_eq!(state_of(&s, &old), "retired");

    // retire a pending key; revoke a retired one; the active key cannot be.
    let retired = s
        .admin(&["signing-keys", "retire", &offline_kid, "--json"])
        .ok();
    assert_eq!(retired["state"], "retired");
    assert_eq!(state_of(&s, &offline_kid), "retired");
    let revoked = s.admin(&["signing-keys", "revoke", &old]);
    assert_eq!(revoked.code, 0, "{revoked:?}");
    assert!(revoked.stdout.contains("state: revoked\n"), "{revoked:?}");
    assert_eq!(state_of(&s, &old), "revoked");
    s.admin(&["signing-keys", "revoke", &kid, "--json"])
        .refused(7, "invalid_key_state");
    s.admin(&["signing-keys", "activate", "no-such-kid", "--json"])
        .refused(6, "not_found");

    let trail = s.admin(&["audit", "list", "--target", &kid, "--json"]).ok();
    assert_eq!(
        audit_actions(&trail),
        ["signing.create", "signing.certify", "signing.activate"]
    );
}

#[test]
fn users_settings_and_audit_commands() {
    let s = Server::start();
    let file = Auth::File(&s.admin_file);

    // users create: the token, once; users list.
    let sam = s
        .run(
            file,
            &[
                "users", "create", "--name", "sam", "--role", "support", "--json",
            ],
        )
        .ok();
    assert_eq!(sam["user"]["role"], "support");
    let sam_token = sam["token"].as_str().unwrap().to_owned();
    assert!(sam_token.starts_with("at_"));
    let olga = s.admin(&["users", "create", "--name", "olga", "--role", "onboarding"]);
    assert_eq!(olga.code, 0, "{olga:?}");
    assert!(olga.stdout.contains("role: onboarding\n"), "{olga:?}");
    let olga_token = olga
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_owned();
    let listed = s.admin(&["users", "list", "--json"]).ok();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.contains(&"sam") && names.contains(&"olga"));
    let table = s.admin(&["users", "list"]);
    assert!(table.stdout.starts_with("ID  "), "{table:?}");
    assert!(table.stdout.contains("ROLE"), "{table:?}");
    let row: Vec<&str> = table
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("sam"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&row[1..4], ["sam", "support", "-"]);
    // A bad role: the server's 400.
    s.admin(&[
        "users", "create", "--name", "x", "--role", "wizard", "--json",
    ])
    .refused(8, "bad_request");

    // support and onboarding may not manage signing keys or users: 5.
    let sam_file = s.path("sam.token");
    std::fs::write(&sam_file, &sam_token).unwrap();
    s.run(Auth::File(&sam_file), &["signing-keys", "create", "--json"])
        .refused(5, "forbidden");
    cli(
        &s.url,
        Auth::Env(&olga_token),
        &["signing-keys", "create", "--json"],
        None,
    )
    .refused(5, "forbidden");
    cli(
        &s.url,
        Auth::Env(&sam_token),
        &["users", "list", "--json"],
        None,
    )
    .refused(5, "forbidden");
    cli(
        &s.url,
        Auth::Env(&sam_token),
        &["audit", "list", "--json"],
        None,
    )
    .refused(5, "forbidden");

    // settings show, set.
    let shown = s.run(file, &["settings", "show", "--json"]).ok();
    assert_eq!(shown["default_grace_days"], 5);
    let set = s
        .admin(&[
            "settings",
            "set",
            "default_grace_days=7",
            "fingerprint-policy=exact",
            "--json",
        ])
        .ok();
    assert_eq!(set["default_grace_days"], 7);
    assert_eq!(
        set["fingerprint_policy"],
        serde_json::json!({"mode": "exact"})
    );
    // Unchanged keys were written back as they were.
    assert_eq!(set["offline_window_secs"], shown["offline_window_secs"]);
    assert_eq!(
        set["airgap_offline_window_secs"],
        shown["airgap_offline_window_secs"]
    );
    let human = s.admin(&["settings", "show"]);
    assert!(
        human.stdout.lines().any(|l| l == "default_grace_days: 7"),
        "{human:?}"
    );
    // An unknown key: refused before sending (2); a value out of bounds: the
    // server's 400 (8); a support user: 5. Nothing changed.
    let unknown = s.admin(&["settings", "set", "grace=3", "--json"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(
        unknown.stderr.contains("unknown setting \"grace\""),
        "{unknown:?}"
    );
    s.admin(&["settings", "set", "heartbeat_interval_secs=5", "--json"])
        .refused(8, "bad_request");
    cli(
        &s.url,
        Auth::Env(&sam_token),
        &["settings", "set", "default_grace_days=1", "--json"],
        None,
    )
    .refused(5, "forbidden");
    assert_eq!(
        s.admin(&["settings", "show", "--json"]).ok()["default_grace_days"],
        7
    );

    // audit list: filters, the table.
    let updates = s
        .admin(&["audit", "list", "--action", "settings.update", "--json"])
        .ok();
    assert_eq!(audit_actions(&updates), ["settings.update"]);
    assert_eq!(updates["items"][0]["target"], "settings");
    let users = s
        .admin(&[
            "audit",
            "list",
            "--action",
            "user.create",
            "--limit",
            "2",
            "--json",
        ])
        .ok();
    assert_eq!(audit_actions(&users), ["user.create", "user.create"]);
    let table = s.admin(&["audit", "list"]);
    assert_eq!(table.code, 0, "{table:?}");
    let mut lines = table.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["SEQ", "AT", "ACTION", "TARGET", "ACTOR", "IP"]);
    let row: Vec<&str> = lines
        .find(|l| l.contains("settings.update"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[2..6],
        ["settings.update", "settings", "admin", "127.0.0.1"]
    );
}

#[test]
fn connection_and_usage_failures() {
    let s = Server::start();

    // --token works too; a wrong token: 5 with the server's error.
    assert_eq!(
        s.run(Auth::Flag(&s.admin), &["licenses", "list", "--json"])
            .ok()["items"],
        serde_json::json!([])
    );
    let wrong = format!("at_{}", "A".repeat(43));
    s.run(Auth::Env(&wrong), &["licenses", "list", "--json"])
        .refused(5, "unauthenticated");
    // A flag beats the environment.
    let both = cli(
        &s.url,
        Auth::Env(&wrong),
        &[
            "licenses",
            "list",
            "--token-file",
            s.admin_file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(both.code, 0, "{both:?}");

    // No server: 3, and a JSON error for scripts.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let down = cli(
        &format!("http://{closed}"),
        Auth::Env(&s.admin),
        &["licenses", "list", "--json"],
        None,
    );
    down.refused(3, "unreachable");
    assert!(down.stderr.contains("cannot connect"), "{down:?}");

    // A 5xx from something in front of the server (a proxy's HTML page): 3,
    // with an error document of the API's shape for scripts.
    let (proxy, request) = answer_once("502 Bad Gateway", "", "<html>bad gateway</html>");
    let bad = cli(
        &proxy,
        Auth::Env(&s.admin),
        &["licenses", "list", "--json"],
        None,
    );
    bad.refused(3, "http_502");
    let request = request.join().unwrap();
    assert!(
        request.starts_with("GET /licenses HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains(&format!("authorization: Bearer {}\r\n", s.admin)),
        "{request}"
    );

    // A redirect is not followed, so the token does not travel to its target.
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let location = format!(
        "Location: http://{}/licenses\r\n",
        elsewhere.local_addr().unwrap()
    );
    let (proxy, request) = answer_once("307 Temporary Redirect", &location, "");
    let moved = cli(&proxy, Auth::Env(&s.admin), &["licenses", "list"], None);
    assert_eq!(moved.code, 1, "{moved:?}");
    assert!(moved.stderr.contains("not followed"), "{moved:?}");
    request.join().unwrap();
    assert_eq!(
        elsewhere.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );

    // Usage: a missing argument or token: 2, nothing sent.
    let missing = s.admin(&["licenses", "issue", "--product", "gateway"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("--customer"), "{missing:?}");
    assert_eq!(s.admin(&["licenses", "show"]).code, 2);
    assert_eq!(
        s.admin(&["licenses", "revoke", "x", "--grace-days", "many"])
            .code,
        2
    );
    let tokenless = s.run(Auth::None, &["licenses", "list"]);
    assert_eq!(tokenless.code, 2, "{tokenless:?}");
    assert!(tokenless.stderr.contains("no API token"), "{tokenless:?}");
    let empty = s.path("empty.token");
    std::fs::write(&empty, "\n").unwrap();
    assert_eq!(s.run(Auth::File(&empty), &["licenses", "list"]).code, 2);
    let bad_url = cli(
        "ftp://127.0.0.1",
        Auth::Env(&s.admin),
        &["licenses", "list"],
        None,
    );
    assert_eq!(bad_url.code, 2, "{bad_url:?}");

    // A CA file with no certificate in it is refused before connecting, since
    // it would trust nothing.
    let no_ca = s.path("empty.pem");
    std::fs::write(&no_ca, "not a certificate\n").unwrap();
    let pinned = s.run(
        Auth::Env(&s.admin),
        &["licenses", "list", "--ca-file", no_ca.to_str().unwrap()],
    );
    assert_eq!(pinned.code, 1, "{pinned:?}");
    assert!(
        pinned.stderr.contains("holds no PEM certificate"),
        "{pinned:?}"
    );

    // The help of every group names the exit codes.
    for group in ["licenses", "signing-keys", "users", "settings"] {
        let help = cli(&s.url, Auth::None, &[group, "--help"], None);
        assert_eq!(help.code, 0, "{help:?}");
        assert!(help.stdout.contains("Exit codes:"), "{group}: {help:?}");
    }
    let help = cli(&s.url, Auth::None, &["audit", "list", "--help"], None);
    assert!(help.stdout.contains("--target"), "{help:?}");
}

/// A certificate from `root` for `subject`, as `keys certify` makes one on the
/// air-gapped machine.
fn offline_certificate(root: &keys::PrivateKey, subject: &str) -> String {
    let now = UnixTime::now();
    keys::sign(
        root,
        &keys::KeyCert {
            iss: "licensing-root".into(),
            iat: now,
            nbf: now,
            exp: now.plus(365 * DAY),
            jti: format!("cert-{subject}"),
            kid: keys::PublicKey::from_b64(subject)
                .unwrap()
                .kid()
                .to_string(),
            public: subject.to_owned(),
            key_use: keys::KeyUse::Lease,
            pop: None,
        },
    )
    .unwrap()
}

/// docs/key-ceremony.md end to end: the root never reaches the control plane.
/// `init --offline-root` takes the trust file, a first signing key and the
/// root's certificate for it; `signing-keys create` then hands out a public key
/// (nothing online can certify it), the offline certificate is attached and
/// activated, and an appliance pinning only the trust file verifies the leases
/// of both keys.
#[test]
fn an_offline_root_certifies_what_the_control_plane_cannot() {
    use keys::keyfile::{KdfParams, KeyRole, Passphrase};
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    // The air-gapped machine.
    let root = keys::PrivateKey::generate().unwrap();
    let first = keys::PrivateKey::generate().unwrap();
    let passphrase = "correct horse battery staple";
    std::fs::write(at("signing.pass"), format!("{passphrase}\n")).unwrap();
    let sealed = keys::keyfile::seal(
        &first,
        KeyRole::Signing,
        &Passphrase::new(passphrase),
        KdfParams::STRONG,
    )
    .unwrap();
    keys::keyfile::write_key_file(&at("signing.key"), &sealed).unwrap();
    let trust_store = keys::TrustStore::new([root.public().clone()]);
    std::fs::write(
        at("trust.json"),
        serde_json::to_string(&trust_store.to_file()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        at("signing.cert"),
        format!("{}\n", offline_certificate(&root, &first.public().to_b64())),
    )
    .unwrap();
    // A certificate for another key is refused, and nothing is created.
    let other = keys::PrivateKey::generate().unwrap();
    std::fs::write(
        at("other.cert"),
        offline_certificate(&root, &other.public().to_b64()),
    )
    .unwrap();
    let refused = command()
        .args([
            "init",
            "--data-dir",
            "refused",
            "--offline-root",
            "trust.json",
        ])
        .args([
            "--signing-key",
            "signing.key",
            "--signing-certificate",
            "other.cert",
        ])
        .args(["--signing-passphrase-file", "signing.pass"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("certifies another key"),
        "{refused:?}"
    );

    let s = Server::start_in(
        dir,
        &[
            "--offline-root",
            "trust.json",
            "--signing-key",
            "signing.key",
            "--signing-certificate",
            "signing.cert",
            "--signing-passphrase-file",
            "signing.pass",
        ],
    );
    let listed = s.admin(&["signing-keys", "list", "--json"]).ok();
    let items = listed["items"].as_array().unwrap();
    let root_item = items.iter().find(|k| k["role"] == "root").unwrap();
    assert_eq!(root_item["kid"], root.kid().as_str());
    assert_eq!(root_item["online"], false);
    let first_item = items.iter().find(|k| k["role"] == "signing").unwrap();
    assert_eq!(first_item["kid"], first.kid().as_str());
    assert_eq!(first_item["state"], "active");

    // An appliance pinning the trust file verifies a lease from the first key.
    let issued = s
        .admin(&[
            "licenses",
            "issue",
            "--customer",
            "acme",
            "--product",
            "gateway",
            "--json",
        ])
        .ok();
    let id = issued["license"]["id"].as_str().unwrap().to_owned();
    let key = issued["license_key"].as_str().unwrap().to_owned();
    let mut device = Device::new(7);
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let mut exchange_with = |kind: RequestKind, trust_store: &keys::TrustStore| -> keys::Lease {
        let request = device.request(kind, &id, &key, UnixTime::now());
        let path = match kind {
            RequestKind::Activate => "activate",
            RequestKind::Heartbeat => "heartbeat",
        };
        let response = http
            .post(format!("{}/licenses/{id}/{path}", s.url))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&request).unwrap())
            .send()
            .unwrap();
        let response: Value = serde_json::from_slice(&response.bytes().unwrap()).unwrap();
        let chain: Vec<&str> = response["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let signer = trust_store
            .verify_chain_at(&chain, UnixTime::now())
            .unwrap();
        trust_store
            .verify_at::<keys::Lease>(
                response["lease"].as_str().unwrap(),
                &signer,
                UnixTime::now(),
            )
            .unwrap()
            .into_claims()
    };
    let mut exchange = |kind: RequestKind| exchange_with(kind, &trust_store);
    let lease = exchange(RequestKind::Activate);
    assert_eq!(lease.sub, id);

    // Rotation with the root offline: create hands out the public key only.
    let created = s.admin(&["signing-keys", "create", "--json"]).ok();
    let kid = created["kid"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "pending");
    assert_eq!(created["chain"], serde_json::json!([]));
    assert!(
        s.admin(&["signing-keys", "activate", &kid]).code != 0,
        "an uncertified key must not become active"
    );
    // A certificate from a root nobody pins is refused.
    let stranger = keys::PrivateKey::generate().unwrap();
    let public = created["public_key"].as_str().unwrap();
    std::fs::write(
        s.path("stranger.cert"),
        offline_certificate(&stranger, public),
    )
    .unwrap();
    let stranger_cert = s.path("stranger.cert");
    let refused = s.admin(&[
        "signing-keys",
        "attach-certificate",
        &kid,
        "--certificate",
        stranger_cert.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(refused.code, 8, "{refused:?}");
    // The offline root's certificate is accepted; the key is activated.
    std::fs::write(s.path("k2.cert"), offline_certificate(&root, public)).unwrap();
    let cert = s.path("k2.cert");
    s.admin(&[
        "signing-keys",
        "attach-certificate",
        &kid,
        "--certificate",
        cert.to_str().unwrap(),
        "--json",
    ])
    .ok();
    s.admin(&["signing-keys", "activate", &kid, "--json"]).ok();
    let lease = exchange(RequestKind::Heartbeat);
    assert_eq!(lease.sub, id);
    let listed = s.admin(&["signing-keys", "list", "--json"]).ok();
    let state_of = |kid: &str| {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state_of(&kid), "active");
    assert_eq!(state_of(first.kid().as_str()), "retired");

    // Root rotation, offline: the old root certifies a new one (with the new
    // root's proof of possession), the new root certifies K3, and the chain
    // [old → new root, new root → K3] is attached.
    let root2 = keys::PrivateKey::generate().unwrap();
    let now = UnixTime::now();
    let rotation = keys::certify_root(
        &root,
        &root2,
        keys::KeyCert {
            iss: "licensing-root".into(),
            iat: now,
            nbf: now,
            exp: now.plus(3 * 365 * DAY),
            jti: "rotation".into(),
            kid: root2.kid().to_string(),
            public: root2.public().to_b64(),
            key_use: keys::KeyUse::Root,
            pop: None,
        },
    )
    .unwrap();
    let attach_new = |issuer: &keys::PrivateKey, prefix: &[&str]| -> String {
        let created = s.admin(&["signing-keys", "create", "--json"]).ok();
        let kid = created["kid"].as_str().unwrap().to_owned();
        let mut chain: Vec<String> = prefix.iter().map(|c| (*c).to_owned()).collect();
        chain.push(offline_certificate(
            issuer,
            created["public_key"].as_str().unwrap(),
        ));
        let file = s.path(&format!("{kid}.chain"));
        std::fs::write(&file, format!("{}\n", chain.join("\n"))).unwrap();
        s.admin(&[
            "signing-keys",
            "attach-certificate",
            &kid,
            "--certificate",
            file.to_str().unwrap(),
            "--json",
        ])
        .ok();
        s.admin(&["signing-keys", "activate", &kid, "--json"]).ok();
        kid
    };
    let k3 = attach_new(&root2, &[rotation.as_str()]);
    // Old installations (pinning the old root) walk the chain; new ones get a
    // trust file that pins both roots.
    let lease = exchange(RequestKind::Heartbeat);
    assert_eq!(lease.sub, id);
    let served: keys::TrustFile = serde_json::from_slice(
        &http
            .get(format!("{}/.well-known/licensing-trust.json", s.url))
            .send()
            .unwrap()
            .bytes()
            .unwrap(),
    )
    .unwrap();
    let served = keys::TrustStore::from_file(&served).unwrap();
    let mut pinned: Vec<String> = served.roots().map(|r| r.kid().to_string()).collect();
    pinned.sort();
    let mut expected = vec![root.kid().to_string(), root2.kid().to_string()];
    expected.sort();
    assert_eq!(pinned, expected);
    let listed = s.admin(&["signing-keys", "list", "--json"]).ok();
    let new_root = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == root2.kid().as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (new_root["role"].as_str(), new_root["online"].as_bool()),
        (Some("root"), Some(false))
    );
    // An installation that pins only the new root verifies K3's chain.
    let chain: Vec<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == k3.as_str())
        .unwrap()["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let refs: Vec<&str> = chain.iter().map(String::as_str).collect();
    keys::TrustStore::new([root2.public().clone()])
        .verify_chain_at(&refs, UnixTime::now())
        .unwrap();
    // The new root may certify keys directly: installations that pin it (all
    // those set up from the served trust file) verify them; one that pins only
    // the old root would not, so the ceremony keeps the rotation certificate in
    // front until every box has the new trust file (docs/key-ceremony.md).
    let k4 = attach_new(&root2, &[]);
    assert_eq!(exchange_with(RequestKind::Heartbeat, &served).sub, id);
    let audit = s
        .admin(&["audit", "list", "--json", "--target", root2.kid().as_str()])
        .ok();
    assert_eq!(audit["items"][0]["action"], "signing.root_add", "{audit}");
    let _ = k4;
}

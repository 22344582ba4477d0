//! `control-plane serve` over TLS, on the real binary: clients that pin the
//! server's CA get through and others are refused; SIGHUP swaps the certificate
//! without a restart and a broken replacement leaves the old one serving; plain
//! HTTP is refused off loopback; SIGHUP without TLS, and SIGTERM the moment the
//! server listens, are handled.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// A CA made for one test, able to issue server certificates for 127.0.0.1.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        TestCa {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes a certificate for `127.0.0.1` and `localhost` and its key.
    fn issue_server_cert(&self, cert: &Path, key: &Path) {
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = params.signed_by(&leaf_key, &self.issuer).unwrap();
        std::fs::write(cert, leaf.pem()).unwrap();
        std::fs::write(key, leaf_key.serialize_pem()).unwrap();
    }
}

fn command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_control-plane"));
    command
        .current_dir(dir)
        .env_remove("CONTROL_PLANE_KEK")
        .env_remove("CONTROL_PLANE_DATA_DIR")
        .env_remove("CONTROL_PLANE_KEK_FILE")
        .env_remove("CONTROL_PLANE_TLS_CERT")
        .env_remove("CONTROL_PLANE_TLS_KEY")
        .env_remove("CONTROL_PLANE_ALLOW_PLAIN_HTTP")
        .env("CONTROL_PLANE_LOG", "info")
        .stdin(Stdio::null());
    command
}

/// A running `control-plane serve`, killed when dropped. Its stdout and stderr
/// lines arrive on `lines`.
struct Server {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut child = command(dir)
            .args(["serve", "--data-dir", "data", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (send, lines) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let send = send.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = send.send(line);
                }
            });
        }
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines,
        };
        let line = server.wait_for_line("listening on ");
        server.addr = line
            .rsplit_once('/')
            .map(|(_, addr)| addr)
            .unwrap()
            .parse()
            .unwrap();
        server
    }

    /// Returns the first line (from now on) that contains `needle`.
    fn wait_for_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {needle:?} from control-plane serve: {e}"),
            }
        }
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

/// GET over a fresh connection that trusts only `ca`.
fn get(ca: &TestCa, url: &str) -> Result<u16, String> {
    let cert = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .tls_certs_only([cert])
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    match client.get(url).send() {
        Ok(response) => Ok(response.status().as_u16()),
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                text.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            Err(text)
        }
    }
}

/// GET over plain HTTP (no proxy, bounded time).
fn plain_get(addr: SocketAddr, path: &str) -> reqwest::Result<reqwest::blocking::Response> {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?
        .get(format!("http://{addr}{path}"))
        .send()
}

/// `control-plane init`; returns the admin token.
fn init(dir: &Path) -> String {
    let out = command(dir)
        .args(["init", "--data-dir", "data", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    printed["admin_token"].as_str().unwrap().to_owned()
}

fn files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("tls.crt"), dir.join("tls.key"))
}

#[test]
fn https_with_a_pinned_ca_and_a_certificate_swapped_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let token = init(dir.path());
    let (cert, key) = files(dir.path());
    let first = TestCa::new("first CA");
    let second = TestCa::new("second CA");
    first.issue_server_cert(&cert, &key);
    let server = Server::start(
        dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );

    assert_eq!(get(&first, &server.url("/healthz")), Ok(200));
    let refused = get(&second, &server.url("/healthz")).unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = plain_get(server.addr, "/healthz");
    assert!(plain.is_err(), "{plain:?}");

    // The admin CLI pins the CA the same way: exit 3 (unreachable) otherwise.
    let cli = |ca: &TestCa| {
        let ca_file = dir.path().join("cli-ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let out = command(dir.path())
            .args(["licenses", "list", "--json", "--server"])
            .arg(format!("https://{}", server.addr))
            .arg("--ca-file")
            .arg(&ca_file)
            .env("CONTROL_PLANE_TOKEN", &token)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = cli(&first);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("\"items\""), "{stdout}");
    assert_eq!(cli(&second).0, Some(3));

    // A renewed certificate (here from another CA) is served after SIGHUP,
    // with no restart: the listener and its port stay the same.
    second.issue_server_cert(&cert, &key);
    server.hangup();
    server.wait_for_line("TLS certificate reloaded");
    assert_eq!(get(&second, &server.url("/healthz")), Ok(200));
    assert!(get(&first, &server.url("/healthz")).is_err());

    // A broken replacement is refused and the current certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    server.hangup();
    let line = server.wait_for_line("TLS reload failed");
    assert!(line.contains("no PEM certificate"), "{line}");
    assert_eq!(get(&second, &server.url("/healthz")), Ok(200));
}

#[test]
fn unusable_tls_settings_and_plain_http_off_loopback_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let (cert, key) = files(dir.path());
    let ca = TestCa::new("test CA");
    ca.issue_server_cert(&cert, &key);
    let other_key = dir.path().join("other.key");
    TestCa::new("other").issue_server_cert(&dir.path().join("other.crt"), &other_key);
    let serve = |args: &[&str]| {
        let out = command(dir.path())
            .args(["serve", "--data-dir", "data"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cert = cert.to_str().unwrap();
    let key = key.to_str().unwrap();

    // Off loopback without TLS: refused before anything is bound.
    let (code, stderr) = serve(&["--listen", "0.0.0.0:0"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("refusing to serve plain HTTP"), "{stderr}");
    // A certificate without its key is a usage error.
    let (code, stderr) = serve(&["--listen", "127.0.0.1:0", "--tls-cert", cert]);
    assert_eq!(code, Some(2), "{stderr}");
    // A key that does not match the certificate.
    let (code, stderr) = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        other_key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot be used together"), "{stderr}");
    // A missing key file names the file.
    let (code, stderr) = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        "missing.key",
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("missing.key"), "{stderr}");
    let _ = key;
}

#[test]
fn sighup_without_tls_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let server = Server::start(dir.path(), &[]);
    server.hangup();
    server.wait_for_line("no TLS certificate to reload");
    let status = plain_get(server.addr, "/healthz").unwrap().status();
    assert_eq!(status, 200);
}

/// SIGTERM sent the moment the server says it listens stops it gracefully
/// (exit 0, `stopped` logged after the store's last flush): the handlers are
/// installed before that line is printed.
#[test]
fn a_sigterm_right_after_listening_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let mut server = Server::start(dir.path(), &[]);
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    server.wait_for_line("stopped");
    let deadline = Instant::now() + DEADLINE;
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

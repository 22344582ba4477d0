//! The real binaries as separate processes: `control-plane` (init, serve, the
//! admin CLI) and `appliance` (activate, run, status, check), each on its own
//! temporary data directory, with days passing through libfaketime.
//!
//! # Finding the binaries
//!
//! [`bin`] looks next to the test executable (`target/debug/deps/..` →
//! `target/debug/NAME`). `scripts/test` builds them (`cargo build --workspace
//! --bins --locked`) before `cargo test`; when one is still missing, the first
//! call builds `control-plane`, `appliance` and `keys` once (a `OnceLock`) and
//! panics with the command if that fails. A stale binary is not rebuilt: build
//! the bins after changing product code, as `scripts/test` does.
//!
//! # Faking time
//!
//! Time is moved with libfaketime (Debian package `faketime`, installed by
//! `scripts/install-test-deps`), never with a switch in the binaries (DESIGN.md:
//! release binaries must not fake time). A [`FakeClock`] is a timestamp file
//! holding an offset in seconds (`+432001`, `-86400`); processes started with it
//! get `LD_PRELOAD=libfaketime.so.1`, `FAKETIME_TIMESTAMP_FILE` and
//! `FAKETIME_NO_CACHE=1`, so libfaketime re-reads the file on every call and a
//! *running* process moves in time when the file changes (the file is replaced
//! by a rename, so no reader sees half of it).
//!
//! Monotonic time is left alone (`FAKETIME_DONT_FAKE_MONOTONIC=1`), on purpose,
//! after trying both on a running `appliance run` whose control plane was down
//! and whose clock was then set back a day:
//! - faked, tokio's timers (which run on the monotonic clock) stalled: no
//!   heartbeat attempt and no clock check for the 25 s watched, and `run` never
//!   noticed the change (it would have slept for a day; a jump forward would
//!   fire every sleep at once instead);
//! - left real, the next check (within 10 s) saw the wall clock behind what
//!   monotonic time allows, locked with `clock_tamper` and exited 1, which is
//!   what a real box does: an owner who sets the clock back moves only the wall
//!   clock. `scenario_clock` keeps that case.
//!
//! Only the wall clock of the processes given the clock moves. The appliance's
//! clock is faked in every scenario that passes days; the control plane stays on
//! the real clock, except where its own days must pass (a revoke's grace and
//! the sweep are judged by the control plane's clock): the lifecycle scenario
//! gives both the *same* [`FakeClock`], so they agree on the day.
//!
//! # Bounds
//!
//! Every wait polls with a deadline ([`wait_for`]) and panics with what it was
//! waiting for; every child is killed (SIGKILL) and reaped on drop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keys::UnixTime;
use serde_json::Value;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where Debian's `faketime` package puts the preload library.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// How long a one-shot command (`status`, `check`, an admin CLI call) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

// ----- binaries -----

/// The directory of the built binaries (`target/debug`), next to the test executable.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's directory");
    if deps.ends_with("deps") {
        deps.parent().expect("target/debug").to_owned()
    } else {
        deps.to_owned()
    }
}

/// Builds the three binaries once, when one is missing.
fn build_bins() -> &'static Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace directory")
            .to_owned();
        let args = [
            "build",
            "--bins",
            "-p",
            "control-plane",
            "-p",
            "appliance",
            "-p",
            "keys",
        ];
        match Command::new(&cargo)
            .args(args)
            .current_dir(&workspace)
            .status()
        {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!(
                "`{cargo} {}` in {} failed: {status}",
                args.join(" "),
                workspace.display()
            )),
            Err(e) => Err(format!("cannot run `{cargo}`: {e}")),
        }
    })
}

/// The path of a built binary (`control-plane`, `appliance`, `keys`).
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.is_file() {
        if let Err(e) = build_bins() {
            panic!(
                "the binary {} is missing and building it failed: {e}",
                path.display()
            );
        }
        assert!(
            path.is_file(),
            "the binary {} is still missing after the build (run `cargo build --workspace --bins`)",
            path.display()
        );
    }
    path
}

// ----- waiting -----

/// Polls `probe` every 50 ms until it returns `Some`, or panics after `limit`
/// saying what it waited for.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The real time now (the test process is never faked).
pub fn real_now() -> UnixTime {
    UnixTime::now()
}

/// A finished one-shot command.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The standard output as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or(Value::Null)
    }
}

/// Runs a command to its end within [`COMMAND_TIMEOUT`] (killed after it).
fn run_to_end(mut command: Command) -> Output {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let stdout = reader_thread(child.stdout.take().unwrap());
    let stderr = reader_thread(child.stderr.take().unwrap());
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn reader_thread(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

// ----- fake time -----

/// A libfaketime timestamp file: an offset from real time, in seconds, shared
/// by every process started with it (see the module doc).
#[derive(Debug, Clone)]
pub struct FakeClock {
    file: PathBuf,
    offset: Arc<Mutex<i64>>,
}

impl FakeClock {
    /// A clock at real time (offset 0), its file in `dir`. Panics with the way
    /// to install it when libfaketime is absent: the tests must not pass
    /// without moving time.
    pub fn new(dir: &Path) -> FakeClock {
        assert!(
            Path::new(LIBFAKETIME).is_file(),
            "libfaketime is not installed ({LIBFAKETIME} is missing): run scripts/install-test-deps \
             (apt-get install faketime)"
        );
        let clock = FakeClock {
            file: dir.join("faketime.rc"),
            offset: Arc::new(Mutex::new(0)),
        };
        clock.set_offset(0);
        clock
    }

    /// Moves the processes' wall clock to real time plus `secs`.
    pub fn set_offset(&self, secs: i64) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{secs:+}\n")).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
        *self.offset.lock().unwrap() = secs;
    }

    /// Moves the processes' wall clock so that it reads `at` now (and runs on from there).
    pub fn set_at(&self, at: UnixTime) {
        self.set_offset(at.secs() - real_now().secs());
    }

    pub fn offset(&self) -> i64 {
        *self.offset.lock().unwrap()
    }

    /// What the faked processes read as the time now.
    pub fn now(&self) -> UnixTime {
        real_now().plus(self.offset())
    }

    /// Adds the libfaketime environment to a command.
    pub fn apply(&self, command: &mut Command) {
        command
            .env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", &self.file)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env_remove("FAKETIME");
    }
}

// ----- a child with its output captured line by line -----

/// A long-running child process; its standard output and error arrive line by
/// line on a channel (and are kept for failure messages). Killed on drop.
#[derive(Debug)]
pub struct Running {
    name: String,
    child: Child,
    lines: Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
    exit: Option<ExitStatus>,
}

fn pump(
    pipe: impl std::io::Read + Send + 'static,
    tx: Sender<String>,
    seen: Arc<Mutex<Vec<String>>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            seen.lock().unwrap().push(line.clone());
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

impl Running {
    fn spawn(name: &str, mut command: Command) -> Running {
        let shown = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
        let (tx, rx) = channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        pump(child.stdout.take().unwrap(), tx.clone(), seen.clone());
        pump(child.stderr.take().unwrap(), tx, seen.clone());
        Running {
            name: name.to_owned(),
            child,
            lines: rx,
            seen,
            exit: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far (both streams).
    pub fn output(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }

    /// Waits for a printed line that satisfies `matches` (lines before it are
    /// consumed), and returns it.
    pub fn wait_line(
        &mut self,
        what: &str,
        limit: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: timed out after {limit:?} waiting for {what}; output:\n{}",
                    self.name,
                    self.output()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let exit = self.try_exit();
                    panic!(
                        "{}: its output ended while waiting for {what} (exit {exit:?}); output:\n{}",
                        self.name,
                        self.output()
                    )
                }
            }
        }
    }

    /// The exit status if it has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().unwrap();
        }
        self.exit
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Waits for the process to end on its own; its exit code (`None`: a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let name = self.name.clone();
        let status = wait_for(&format!("{name} to exit"), limit, || self.try_exit());
        status.code()
    }

    /// Sends a signal (no-op once it has ended).
    pub fn signal(&mut self, signal: nix::sys::signal::Signal) {
        if self.is_running() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }

    /// SIGTERM, then waits for the exit; its code.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(30))
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let status = self.child.wait().unwrap();
        self.exit = Some(status);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ----- the control plane -----

/// How to start a control plane.
#[derive(Debug, Clone, Default)]
pub struct PlaneOptions {
    /// `--sweep-interval` in seconds (the binary's default, an hour, when `None`).
    pub sweep_interval_secs: Option<u64>,
    /// Run it under this fake clock (its days pass with the appliance's).
    pub clock: Option<FakeClock>,
}

/// `control-plane serve` on a fresh data directory and a loopback port, with
/// rate limits off (the scenarios heartbeat far faster than a fleet); or on a
/// PostgreSQL store that exists already ([`ControlPlaneProc::start_on_postgres`]).
#[derive(Debug)]
pub struct ControlPlaneProc {
    dir: tempfile::TempDir,
    options: PlaneOptions,
    /// The PostgreSQL URL and the KEK file when the store is PostgreSQL; the
    /// sled store in `dir/data` when `None`.
    postgres: Option<(String, PathBuf)>,
    /// The super_admin's API token from `init --json`.
    pub token: String,
    pub addr: std::net::SocketAddr,
    pub url: String,
    server: Option<Running>,
}

impl ControlPlaneProc {
    pub fn start(options: PlaneOptions) -> ControlPlaneProc {
        let dir = tempfile::tempdir().unwrap();
        let mut init = Command::new(bin("control-plane"));
        init.args(["init", "--json", "--data-dir"])
            .arg(dir.path().join("data"));
        if let Some(clock) = &options.clock {
            clock.apply(&mut init);
        }
        let out = run_to_end(init);
        assert_eq!(out.code, Some(0), "control-plane init: {out:?}");
        let token = out.json()["admin_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no admin_token in {}", out.stdout))
            .to_owned();
        let mut plane = ControlPlaneProc {
            dir,
            options,
            postgres: None,
            token,
            addr: "127.0.0.1:0".parse().unwrap(),
            url: String::new(),
            server: None,
        };
        plane.serve("127.0.0.1:0".parse().unwrap());
        plane
    }

    /// `control-plane serve --store URL --kek-file KEK` on a PostgreSQL store
    /// that is initialized already (by `migrate`), listening on `listen` (an
    /// earlier server's address, retried until the port is free, so that
    /// appliances need no new address; or port 0). `token` is the admin token
    /// its installation was initialized with.
    pub fn start_on_postgres(
        url: &str,
        kek_file: &Path,
        token: &str,
        listen: std::net::SocketAddr,
        options: PlaneOptions,
    ) -> ControlPlaneProc {
        let mut plane = ControlPlaneProc {
            dir: tempfile::tempdir().unwrap(),
            options,
            postgres: Some((url.to_owned(), kek_file.to_owned())),
            token: token.to_owned(),
            addr: listen,
            url: String::new(),
            server: None,
        };
        wait_port_free(listen);
        plane.serve(listen);
        plane
    }

    /// The temp directory (data dir, KEK, files for appliances).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The sled data directory (`init --data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The key-encryption key file `init` wrote beside the data directory
    /// (`control_plane::config::default_kek_file`).
    pub fn kek_file(&self) -> PathBuf {
        match &self.postgres {
            Some((_, kek)) => kek.clone(),
            None => control_plane::config::default_kek_file(&self.data_dir()),
        }
    }

    /// The store as `--store` and `migrate --from` take it.
    pub fn store(&self) -> String {
        match &self.postgres {
            Some((url, _)) => url.clone(),
            None => format!("sled:{}", self.data_dir().display()),
        }
    }

    fn serve(&mut self, listen: std::net::SocketAddr) {
        let mut serve = Command::new(bin("control-plane"));
        serve.arg("serve");
        match &self.postgres {
            Some((url, kek)) => {
                serve.arg("--store").arg(url).arg("--kek-file").arg(kek);
            }
            None => {
                serve.arg("--data-dir").arg(self.data_dir());
            }
        }
        serve
            .arg("--listen")
            .arg(listen.to_string())
            .env("CONTROL_PLANE_HEARTBEATS_PER_MINUTE", "0")
            .env("CONTROL_PLANE_ACTIVATIONS_PER_MINUTE", "0")
            .env("CONTROL_PLANE_AUTH_FAILURES_PER_MINUTE", "0")
            .env("CONTROL_PLANE_LOG", "warn");
        if let Some(secs) = self.options.sweep_interval_secs {
            serve.arg("--sweep-interval").arg(secs.to_string());
        }
        if let Some(clock) = &self.options.clock {
            clock.apply(&mut serve);
        }
        let mut server = Running::spawn("control-plane serve", serve);
        let line = server.wait_line("`listening on`", Duration::from_secs(30), |l| {
            l.starts_with("listening on http://")
        });
        let addr = line.trim_start_matches("listening on http://").trim();
        self.addr = addr.parse().unwrap();
        self.url = format!("http://{addr}");
        self.server = Some(server);
    }

    pub fn is_running(&mut self) -> bool {
        self.server.as_mut().is_some_and(Running::is_running)
    }

    /// SIGTERM; waits for a clean exit (0).
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let code = server.stop();
            assert_eq!(
                code,
                Some(0),
                "control-plane serve exit; output:\n{}",
                server.output()
            );
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// Serves again on the same data directory and the same port (retrying
    /// while the port is not free yet), so appliances need no new address.
    pub fn restart(&mut self) {
        self.stop();
        let addr = self.addr;
        wait_port_free(addr);
        self.serve(addr);
        assert_eq!(
            self.addr, addr,
            "the control plane came back on another port"
        );
    }

    /// Runs an admin CLI command (`licenses show ID`...) with `--json` and the
    /// token; returns the exit code and the parsed answer.
    pub fn cli(&self, args: &[&str]) -> (Option<i32>, Value) {
        self.cli_as(&self.token, args)
    }

    /// [`ControlPlaneProc::cli`] with another user's API token.
    pub fn cli_as(&self, token: &str, args: &[&str]) -> (Option<i32>, Value) {
        let mut command = Command::new(bin("control-plane"));
        command
            .args(args)
            .arg("--server")
            .arg(&self.url)
            .arg("--json")
            .env("CONTROL_PLANE_TOKEN", token);
        let out = run_to_end(command);
        (out.code, out.json())
    }

    /// An admin CLI command that must succeed (exit 0); its JSON answer.
    pub fn cli_ok(&self, args: &[&str]) -> Value {
        let (code, value) = self.cli(args);
        assert_eq!(code, Some(0), "control-plane {}: {value}", args.join(" "));
        value
    }

    /// `licenses issue`; extra arguments such as `--heartbeat-interval-secs 10`.
    /// Returns (id, license key).
    pub fn issue(&self, customer: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec![
            "licenses",
            "issue",
            "--customer",
            customer,
            "--product",
            "gateway",
        ];
        args.extend_from_slice(extra);
        let answer = self.cli_ok(&args);
        (
            answer["license"]["id"].as_str().unwrap().to_owned(),
            answer["license_key"].as_str().unwrap().to_owned(),
        )
    }

    pub fn show(&self, id: &str) -> Value {
        self.cli_ok(&["licenses", "show", id])
    }

    pub fn revoke(&self, id: &str, grace_days: u32) -> Value {
        self.cli_ok(&[
            "licenses",
            "revoke",
            id,
            "--grace-days",
            &grace_days.to_string(),
        ])
    }

    pub fn reinstate(&self, id: &str) -> Value {
        self.cli_ok(&["licenses", "reinstate", id])
    }

    /// `licenses regenerate`; the new license key.
    pub fn regenerate(&self, id: &str) -> String {
        let answer = self.cli_ok(&["licenses", "regenerate", id]);
        answer["license_key"]
            .as_str()
            .unwrap_or_else(|| panic!("no license_key in {answer}"))
            .to_owned()
    }

    /// `licenses rebind ID --unbind`: whichever box activates next binds.
    pub fn unbind(&self, id: &str) -> Value {
        self.cli_ok(&["licenses", "rebind", id, "--unbind"])
    }

    /// `licenses rebind ID --fingerprint FILE`: the license moves to the box
    /// whose `appliance fingerprint` output is in `fingerprint`.
    pub fn rebind_to(&self, id: &str, fingerprint: &Path) -> Value {
        let file = fingerprint.to_string_lossy();
        self.cli_ok(&["licenses", "rebind", id, "--fingerprint", &file])
    }

    /// `settings set KEY=VALUE...`; the settings after the change.
    pub fn settings_set(&self, changes: &[&str]) -> Value {
        let mut args = vec!["settings", "set"];
        args.extend_from_slice(changes);
        self.cli_ok(&args)
    }

    /// `licenses sweep`: the health sweep now.
    pub fn sweep(&self) -> Value {
        self.cli_ok(&["licenses", "sweep"])
    }

    /// `control-plane audit verify` on the store; a sled server must be
    /// stopped (sled locks the directory while it runs), a PostgreSQL one need not.
    pub fn audit_verify(&self) -> Output {
        control_plane(&["audit", "verify", "--store", &self.store()])
    }

    /// The audit records about `target` (`audit list --target`), oldest first.
    pub fn audit(&self, target: &str) -> Vec<Value> {
        let answer = self.cli_ok(&["audit", "list", "--target", target, "--limit", "1000"]);
        answer["items"].as_array().cloned().unwrap_or_default()
    }

    /// The actions of [`ControlPlaneProc::audit`].
    pub fn audit_actions(&self, target: &str) -> Vec<String> {
        self.audit(target)
            .iter()
            .filter_map(|r| r["action"].as_str().map(str::to_owned))
            .collect()
    }

    /// `GET path` on the API with the admin token, from the test process (for
    /// tight loops, where starting the CLI each time would dominate); the
    /// status and JSON body.
    pub fn api_get(&self, path: &str) -> (u16, Value) {
        self.api(reqwest::Method::GET, path, None)
    }

    /// `POST path` with a JSON body on the API with the admin token, from the
    /// test process; the status and JSON body (`Value::Null` when not JSON).
    pub fn api_post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.api(reqwest::Method::POST, path, Some(body))
    }

    fn api(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut request = reqwest::Client::new()
                .request(method.clone(), &url)
                .bearer_auth(&self.token)
                .timeout(Duration::from_secs(10));
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.to_string());
            }
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    /// Writes the trust file appliances pin, from
    /// `GET /.well-known/licensing-trust.json`, into `path`.
    pub fn write_trust(&self, path: &Path) {
        let url = format!("{}/.well-known/licensing-trust.json", self.url);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let text = runtime.block_on(async {
            let response = reqwest::Client::new()
                .get(&url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200, "GET {url}");
            response.text().await.unwrap()
        });
        std::fs::write(path, text).unwrap();
    }
}

/// Waits until `addr` can be bound: probed first, because a `serve` that
/// cannot bind would only say so on its log.
fn wait_port_free(addr: std::net::SocketAddr) {
    if addr.port() == 0 {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(probe) => {
                drop(probe);
                return;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "port {addr} stays busy: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Runs `control-plane ARGS...` to its end (an offline command: `migrate`,
/// `audit verify`).
pub fn control_plane(args: &[&str]) -> Output {
    let mut command = Command::new(bin("control-plane"));
    command
        .args(args)
        .env_remove("CONTROL_PLANE_STORE")
        .env_remove("CONTROL_PLANE_DATA_DIR")
        .env("CONTROL_PLANE_LOG", "warn");
    run_to_end(command)
}

impl Drop for ControlPlaneProc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ----- the appliance -----

/// An appliance: its own data directory, the control plane's trust file, and
/// optionally a fake clock for every command it runs.
#[derive(Debug)]
pub struct ApplianceProc {
    dir: tempfile::TempDir,
    pub name: String,
    pub data_dir: PathBuf,
    pub trust: PathBuf,
    pub clock: Option<FakeClock>,
}

impl ApplianceProc {
    /// A fresh appliance pinned to `plane`'s trust file.
    pub fn new(name: &str, plane: &ControlPlaneProc, clock: Option<FakeClock>) -> ApplianceProc {
        let dir = tempfile::tempdir().unwrap();
        let trust = dir.path().join("trust.json");
        plane.write_trust(&trust);
        ApplianceProc {
            data_dir: dir.path().join("data"),
            dir,
            name: name.to_owned(),
            trust,
            clock,
        }
    }

    /// A second appliance on a copy of this one's data directory (a cloned VM).
    /// Copy it while no `run` holds the store.
    pub fn clone_to(&self, name: &str) -> ApplianceProc {
        let dir = tempfile::tempdir().unwrap();
        let trust = dir.path().join("trust.json");
        std::fs::copy(&self.trust, &trust).unwrap();
        let data_dir = dir.path().join("data");
        copy_dir(&self.data_dir, &data_dir);
        ApplianceProc {
            dir,
            name: name.to_owned(),
            data_dir,
            trust,
            clock: self.clock.clone(),
        }
    }

    /// The appliance's temp directory (key files go there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin("appliance"));
        command
            .args(args)
            .env("APPLIANCE_DATA_DIR", &self.data_dir)
            .env("APPLIANCE_TRUST_FILE", &self.trust)
            .env("APPLIANCE_LOG", "info")
            .env_remove("APPLIANCE_LICENSE_KEY")
            .env_remove("APPLIANCE_STATUS_SOCKET");
        if let Some(clock) = &self.clock {
            clock.apply(&mut command);
        }
        command
    }

    /// `appliance activate` with the key in a file (`APPLIANCE_LICENSE_KEY_FILE`).
    pub fn activate(&self, server: &str, license_id: &str, key: &str) -> Output {
        let key_file = self.dir.path().join("license.key");
        std::fs::write(&key_file, key).unwrap();
        let mut command = self.command(&["activate"]);
        command
            .env("APPLIANCE_SERVER", server)
            .env("APPLIANCE_LICENSE_ID", license_id)
            .env("APPLIANCE_LICENSE_KEY_FILE", &key_file);
        run_to_end(command)
    }

    /// `appliance status --json`: the exit code and the status. Panics when it
    /// prints no JSON (see [`ApplianceProc::try_status`]).
    pub fn status(&self) -> (Option<i32>, Value) {
        let out = run_to_end(self.command(&["status", "--json"]));
        let value = out.json();
        assert!(
            value.is_object(),
            "{}: status --json printed no JSON: {out:?}",
            self.name
        );
        (out.code, value)
    }

    /// `appliance status --json`, or the whole output when it printed no JSON
    /// (a `run` starting up holds the store before its socket answers).
    pub fn try_status(&self) -> Result<(Option<i32>, Value), Output> {
        let out = run_to_end(self.command(&["status", "--json"]));
        let value = out.json();
        if value.is_object() {
            Ok((out.code, value))
        } else {
            Err(out)
        }
    }

    /// `appliance fingerprint --license-id ID` (what support needs for a
    /// rebind), written to a file in the appliance's directory; its path.
    pub fn fingerprint(&self, license_id: &str) -> PathBuf {
        let out = run_to_end(self.command(&["fingerprint", "--license-id", license_id]));
        assert_eq!(out.code, Some(0), "{}: fingerprint: {out:?}", self.name);
        let path = self.dir.path().join("fingerprint.json");
        std::fs::write(&path, &out.stdout).unwrap();
        path
    }

    /// `appliance check`: its exit code.
    pub fn check(&self) -> Option<i32> {
        run_to_end(self.command(&["check"])).code
    }

    /// `appliance run`, returned at once (see [`ApplianceProc::run`]).
    pub fn spawn_run(&self) -> Running {
        Running::spawn(&format!("{} run", self.name), self.command(&["run"]))
    }

    /// `appliance run` (no child command), its output captured line by line.
    ///
    /// Returns once its status socket answers (or it has exited): until then
    /// `run` may be opening the store, and a `status` or `check` that found no
    /// socket would open the store itself and make `run` find it busy.
    pub fn run(&self) -> Running {
        let socket = self.data_dir.join("status.sock");
        let mut running = self.spawn_run();
        wait_for(
            &format!("{} run to answer on {}", self.name, socket.display()),
            Duration::from_secs(30),
            || {
                let answers = std::os::unix::net::UnixStream::connect(&socket).is_ok();
                (answers || !running.is_running()).then_some(())
            },
        );
        running
    }

    /// Waits until `status --json` satisfies `ok`; returns that status.
    pub fn wait_status(&self, what: &str, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let last = match self.try_status() {
                Ok((_, status)) if ok(&status) => return status,
                Ok((_, status)) => status.to_string(),
                Err(out) => format!("{out:?}"),
            };
            assert!(
                Instant::now() < deadline,
                "{}: timed out after {limit:?} waiting for {what}; last status: {last}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for a heartbeat after `seq`: a stored lease with a higher seq.
    pub fn wait_heartbeat(&self, after_seq: u64, limit: Duration) -> Value {
        self.wait_status(&format!("a lease after seq {after_seq}"), limit, |s| {
            s["lease_seq"].as_u64().is_some_and(|seq| seq > after_seq)
        })
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
        // Sockets (status.sock) are not copied: they belong to a process.
    }
}

/// A field of a status or card as unix seconds: a number, or RFC 3339 text.
pub fn unix(value: &Value) -> Option<UnixTime> {
    match value {
        Value::Number(n) => n.as_i64().map(UnixTime),
        Value::String(s) => UnixTime::parse_rfc3339(s),
        _ => None,
    }
}

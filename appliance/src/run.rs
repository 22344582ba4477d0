//! `appliance run`: the loop that heartbeats, checks the clock, serves status
//! on a local socket, and enforces: without a child it exits non-zero as soon as
//! the appliance is locked (systemd's `Restart=always` then retries, and the
//! first heartbeat after a reinstate brings it back); with a child
//! (`appliance run -- CMD`) it sends the child SIGTERM on lock and starts it
//! again on recovery.
//!
//! The loop only sleeps, backs off and calls `Agent::heartbeat_once` and
//! `Agent::check`, which tests drive directly (STYLE.md "Background loops").

use crate::agent::{Agent, Outcome, Status};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::process::{Child, Command};

/// How often the clock and lease are checked between heartbeats.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// The first retry delay after a failed heartbeat; it doubles up to the interval.
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// How long a child gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Why `run` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Locked or not activated: the licensed service must not run.
    Locked(Status),
    /// Asked to stop (SIGTERM, Ctrl-C).
    Stopped,
}

/// A random fraction in [-0.1, 0.1] of `d`, so a fleet's heartbeats spread out.
fn jitter(d: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    let fraction = (f64::from(byte[0]) / 255.0 - 0.5) / 5.0;
    d.mul_f64(1.0 + fraction)
}

/// Serves the status as one JSON line to whoever connects to `path`.
async fn serve_status(agent: Arc<Agent>, path: PathBuf) {
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot serve status on the socket");
            return;
        }
    };
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let status = agent.status();
        let mut line = serde_json::to_vec(&status).unwrap_or_default();
        line.push(b'\n');
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&line)).await;
    }
}

/// Reads the status from a running agent's socket.
pub async fn read_status_socket(path: &Path) -> Option<serde_json::Value> {
    use tokio::io::AsyncReadExt as _;
    let read = async {
        let mut stream = tokio::net::UnixStream::connect(path).await.ok()?;
        let mut buf = Vec::new();
        (&mut stream)
            .take(64 * 1024)
            .read_to_end(&mut buf)
            .await
            .ok()?;
        serde_json::from_slice(&buf).ok()
    };
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()
        .flatten()
}

fn spawn_child(command: &[String]) -> Option<Child> {
    let (program, args) = command.split_first()?;
    match Command::new(program).args(args).kill_on_drop(true).spawn() {
        Ok(child) => {
            tracing::info!(program, pid = child.id(), "started the licensed service");
            Some(child)
        }
        Err(e) => {
            tracing::error!(program, error = %e, "cannot start the licensed service");
            None
        }
    }
}

async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            tracing::info!(pid, "the licensed service stopped");
            return;
        }
    }
    let _ = child.kill().await;
}

/// Runs until locked (without a child) or until `shutdown` completes.
pub async fn run(
    agent: Arc<Agent>,
    child_command: Option<Vec<String>>,
    socket: Option<PathBuf>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Exit {
    if let Some(path) = socket {
        tokio::spawn(serve_status(agent.clone(), path));
    }
    tokio::pin!(shutdown);
    let mut child: Option<Child> = None;
    let mut retry = FIRST_RETRY;
    let mut next_heartbeat = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_heartbeat {
            let outcome = agent.heartbeat_once().await;
            let interval =
                Duration::from_secs(u64::from(agent.status().heartbeat_interval_secs.max(10)));
            let wait = match &outcome {
                Outcome::Renewed { .. } | Outcome::Denied(_) | Outcome::NotActivated => {
                    retry = FIRST_RETRY;
                    interval
                }
                Outcome::Offline(_) => {
                    let wait = retry.min(interval);
                    retry = (retry * 2).min(interval);
                    wait
                }
            };
            next_heartbeat = tokio::time::Instant::now() + jitter(wait);
        }
        let status = agent.check();
        match (&child_command, status.runs) {
            (None, false) => return Exit::Locked(status),
            (Some(command), true) => {
                let exited = match child.as_mut() {
                    Some(c) => matches!(c.try_wait(), Ok(Some(_))),
                    None => true,
                };
                if exited {
                    child = spawn_child(command);
                }
            }
            (Some(_), false) => {
                if let Some(mut c) = child.take() {
                    tracing::warn!(banner = ?status.banner, "locked: stopping the licensed service");
                    stop_child(&mut c).await;
                }
            }
            (None, true) => {}
        }
        let sleep =
            (next_heartbeat - tokio::time::Instant::now().min(next_heartbeat)).min(CHECK_EVERY);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = &mut shutdown => {
                if let Some(mut c) = child.take() {
                    stop_child(&mut c).await;
                }
                return Exit::Stopped;
            }
        }
    }
}

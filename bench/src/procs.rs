//! The servers the simulator starts as separate processes (`control-plane
//! serve`, `fleet-floor`), and what `/proc` says about a process: CPU time and
//! resident memory.
//!
//! A [`Server`] is a guard: dropping it stops the process (SIGTERM, then SIGKILL
//! after [`STOP_DEADLINE`]) and reaps it, so every exit path of `fleet run`
//! (an error, Ctrl-C) leaves no server behind.

use anyhow::{Context as _, Result, anyhow, bail};
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long a server may take to print its `listening on` line.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a server may take to stop after SIGTERM before it gets SIGKILL.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// A running server process, stopped on drop.
#[derive(Debug)]
pub struct Server {
    name: String,
    child: Child,
    /// `host:port` from its `listening on http://ADDR` line.
    addr: String,
}

impl Server {
    /// Starts `command` (stdout piped, stderr to `log`) and waits for its
    /// `listening on http://ADDR` line.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Server> {
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        let stdout = child.stdout.take();
        // The guard exists before anything else can fail, so the child is
        // stopped on every path from here.
        let mut server = Server {
            name: name.to_owned(),
            child,
            addr: String::new(),
        };
        let stdout = stdout.ok_or_else(|| anyhow!("{name}: no stdout pipe"))?;
        let (tx, rx) = channel();
        // Reads every line until the process exits, so the pipe never fills.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                        server.addr = addr.to_owned();
                        return Ok(server);
                    }
                }
                Err(RecvTimeoutError::Timeout) => bail!(
                    "{name} printed no `listening on http://` line within {START_DEADLINE:?} (log: {})",
                    log.display()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("{name} exited before listening (log: {})", log.display())
                }
            }
        }
    }

    /// The base URL, `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL once [`STOP_DEADLINE`] has passed; reaps the process.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "fleet: {} did not stop within {STOP_DEADLINE:?} of SIGTERM; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a one-shot command to its end within `timeout`; returns its stdout.
/// Fails (after killing it) when it runs longer or exits non-zero.
pub fn run_to_end(name: &str, mut command: Command, timeout: Duration) -> Result<String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {name} ({command:?})"))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.read_to_string(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(err) = stderr.as_mut() {
            let _ = err.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for a child")? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        bail!("{name} failed ({status}): {}", err.trim());
    }
    Ok(out)
}

/// What `/proc` says about one process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// User plus system CPU time, all threads, in seconds.
    pub cpu_secs: f64,
    /// Peak resident set size (VmHWM), in KiB.
    pub peak_rss_kib: u64,
}

/// Reads `/proc/PID/stat` (utime, stime) and `/proc/PID/status` (VmHWM).
pub fn sample(pid: u32, ticks_per_sec: f64) -> Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its `)`.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("/proc/{pid}/stat has no `)`"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("/proc/{pid}/stat: field {} unreadable", i + 3))
    };
    let cpu_ticks = ticks(11)? + ticks(12)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow!("/proc/{pid}/status has no VmHWM"))?;
    #[allow(clippy::cast_precision_loss)] // CPU ticks stay far below 2^52.
    let cpu_secs = cpu_ticks as f64 / ticks_per_sec;
    Ok(Sample {
        cpu_secs,
        peak_rss_kib,
    })
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`, 100 on Linux if
/// that cannot be asked).
pub fn ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let s = sample(std::process::id(), ticks_per_sec()).unwrap();
        assert!(s.cpu_secs >= 0.0);
        assert!(s.peak_rss_kib > 0);
    }

    #[test]
    fn a_command_that_runs_too_long_is_killed() {
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let started = Instant::now();
        let e = run_to_end("sleep", sleep, Duration::from_millis(200)).unwrap_err();
        assert!(e.to_string().contains("did not finish"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

//! The load loop, the same for the floors and for the control plane: C tasks on
//! one keep-alive HTTP/1.1 client, each owning a share of the devices and
//! sending one signed device request at a time, so no device ever has two
//! requests in flight and its counter only goes up.
//!
//! Flat out (closed loop), each task sends its next request as soon as the last
//! one is answered. With a target rate (open loop), request `k` is due at
//! `start + k / rate` whoever sends it, and its latency is counted from when it
//! was due, not from when a task got round to it, so a server that falls behind
//! shows the queueing in its latencies instead of hiding it (coordinated
//! omission).

use crate::fleet::Device;
use crate::procs;
use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use keys::proto::RequestKind;
use reqwest::Client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// What a phase sends its requests to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The floor server's `POST /bare`: read the body, answer fixed JSON.
    Bare,
    /// The floor server's `POST /sign`: read the body, sign ~300 bytes.
    Sign,
    /// The control plane's `POST /licenses/{id}/heartbeat`.
    Heartbeat,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Bare => "floor: bare",
            Target::Sign => "floor: sign",
            Target::Heartbeat => "control plane: heartbeat",
        }
    }
}

/// How a phase runs.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub concurrency: usize,
    /// Sent but not counted, before the measured window (connections, caches).
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests per second (open loop), or flat out.
    pub rate: Option<f64>,
    /// Every request's deadline, from sending to the whole answer.
    pub timeout: Duration,
    /// Verify one lease in this many with `keys` (heartbeats only).
    pub verify_every: u64,
}

/// CPU and memory of the server under load (the sum over its replicas) and of
/// this process.
#[derive(Debug, Clone)]
pub struct Probe {
    pub server_pids: Vec<u32>,
    pub ticks_per_sec: f64,
}

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    server: Option<procs::Sample>,
    client_cpu_secs: Option<f64>,
}

impl Probe {
    fn take(&self) -> Snapshot {
        Snapshot {
            server: self
                .server_pids
                .iter()
                .map(|&pid| procs::sample(pid, self.ticks_per_sec).ok())
                .reduce(|a, b| {
                    a.zip(b).map(|(a, b)| procs::Sample {
                        cpu_secs: a.cpu_secs + b.cpu_secs,
                        peak_rss_kib: a.peak_rss_kib + b.peak_rss_kib,
                    })
                })
                .flatten(),
            client_cpu_secs: procs::sample(std::process::id(), self.ticks_per_sec)
                .ok()
                .map(|s| s.cpu_secs),
        }
    }
}

/// What a phase measured.
#[derive(Debug)]
pub struct Outcome {
    pub target: Target,
    /// Latency of every measured request, answered or not, in microseconds.
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    /// Failed requests by kind (`http 409 clone_suspected`, `timeout`, ...).
    pub errors: BTreeMap<String, u64>,
    /// From the start of the measured window to the last measured answer.
    pub elapsed: Duration,
    /// Leases verified with `keys` (a failure is counted in `errors`).
    pub leases_verified: u64,
    /// Server CPU seconds over the measured window.
    pub server_cpu_secs: Option<f64>,
    /// The server's peak resident memory (VmHWM) at the end, KiB.
    pub server_peak_rss_kib: Option<u64>,
    /// This process's CPU seconds over the measured window.
    pub client_cpu_secs: Option<f64>,
}

/// Verifies sampled leases against the control plane's published trust file.
#[derive(Debug)]
pub struct LeaseCheck {
    pub trust: keys::TrustStore,
}

impl LeaseCheck {
    fn verify(&self, body: &Value, device: &Device, nonce: &str) -> Result<(), String> {
        let chain: Vec<&str> = body["chain"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let lease = body["lease"].as_str().ok_or("bad lease: no lease")?;
        let now = keys::UnixTime::now();
        let signer = self
            .trust
            .verify_chain_at(&chain, now)
            .map_err(|e| format!("bad lease: chain: {e}"))?;
        let lease = self
            .trust
            .verify_at::<keys::Lease>(lease, &signer, now)
            .map_err(|e| format!("bad lease: {e}"))?
            .into_claims();
        if lease.sub != device.license_id || lease.nonce != nonce {
            return Err("bad lease: sub or nonce is not the request's".to_owned());
        }
        Ok(())
    }
}

struct Shared {
    client: Client,
    /// The server's base URLs: a request goes to one replica, the next
    /// request of the same device to the next.
    bases: Vec<String>,
    target: Target,
    config: Config,
    check: Option<LeaseCheck>,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    ticket: AtomicU64,
}

struct WorkerResult {
    devices: Vec<Device>,
    latency_us: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    last_answer: Option<Instant>,
    leases_verified: u64,
}

pub fn histogram() -> Result<Histogram<u64>> {
    // 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).context("creating a latency histogram")
}

/// Runs one phase: warm-up, then the measured window. Returns the devices (their
/// counters moved on) for the next phase.
pub async fn run(
    client: &Client,
    bases: &[String],
    target: Target,
    devices: Vec<Device>,
    config: Config,
    check: Option<LeaseCheck>,
    probe: Probe,
) -> Result<(Outcome, Vec<Device>)> {
    if bases.is_empty() {
        bail!("no server to send requests to");
    }
    let workers = config.concurrency.clamp(1, devices.len().max(1));
    let mut shares: Vec<Vec<Device>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, device) in devices.into_iter().enumerate() {
        if let Some(share) = shares.get_mut(i % workers) {
            share.push(device);
        }
    }
    let start = Instant::now();
    let measure_from = start + config.warmup;
    let shared = Arc::new(Shared {
        client: client.clone(),
        bases: bases.to_vec(),
        target,
        config,
        check,
        start,
        measure_from,
        end: measure_from + config.duration,
        ticket: AtomicU64::new(0),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let shared = shared.clone();
        let latency_us = histogram()?;
        tasks.spawn(worker(shared, share, latency_us));
    }
    tokio::time::sleep_until(measure_from).await;
    let before = probe.take();
    let mut results = Vec::with_capacity(workers);
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.context("a load task")?);
    }
    let after = probe.take();

    let mut outcome = Outcome {
        target,
        latency_us: histogram()?,
        ok: 0,
        errors: BTreeMap::new(),
        elapsed: Duration::ZERO,
        leases_verified: 0,
        server_cpu_secs: before
            .server
            .zip(after.server)
            .map(|(b, a)| a.cpu_secs - b.cpu_secs),
        server_peak_rss_kib: after.server.map(|a| a.peak_rss_kib),
        client_cpu_secs: before
            .client_cpu_secs
            .zip(after.client_cpu_secs)
            .map(|(b, a)| a - b),
    };
    let mut devices = Vec::new();
    let mut last = measure_from;
    for r in results {
        outcome
            .latency_us
            .add(&r.latency_us)
            .context("merging latency histograms")?;
        outcome.ok += r.ok;
        for (kind, n) in r.errors {
            *outcome.errors.entry(kind).or_default() += n;
        }
        outcome.leases_verified += r.leases_verified;
        if let Some(at) = r.last_answer {
            last = last.max(at);
        }
        devices.extend(r.devices);
    }
    outcome.elapsed = last.saturating_duration_since(measure_from);
    Ok((outcome, devices))
}

async fn worker(
    shared: Arc<Shared>,
    mut devices: Vec<Device>,
    latency_us: Histogram<u64>,
) -> WorkerResult {
    let mut result = WorkerResult {
        devices: Vec::new(),
        latency_us,
        ok: 0,
        errors: BTreeMap::new(),
        last_answer: None,
        leases_verified: 0,
    };
    let mut next = 0usize;
    while !devices.is_empty() {
        let due = match shared.config.rate {
            None => {
                let now = Instant::now();
                if now >= shared.end {
                    break;
                }
                now
            }
            Some(rate) => {
                let k = shared.ticket.fetch_add(1, Ordering::Relaxed);
                #[allow(clippy::cast_precision_loss)] // Tickets stay far below 2^52.
                let due = shared.start + Duration::from_secs_f64(k as f64 / rate);
                if due >= shared.end {
                    break;
                }
                tokio::time::sleep_until(due).await;
                due
            }
        };
        let verify = shared.target == Target::Heartbeat
            && shared.check.is_some()
            && (next as u64).is_multiple_of(shared.config.verify_every.max(1));
        let index = next % devices.len();
        // Each round over the devices moves every device to the next replica.
        let replica = (next / devices.len() + index) % shared.bases.len();
        next = next.wrapping_add(1);
        let Some(device) = devices.get_mut(index) else {
            break;
        };
        let answer = one(&shared, device, replica, verify).await;
        let now = Instant::now();
        if due < shared.measure_from {
            continue;
        }
        let micros =
            u64::try_from(now.saturating_duration_since(due).as_micros()).unwrap_or(u64::MAX);
        result.latency_us.saturating_record(micros.max(1));
        result.last_answer = Some(now);
        match answer {
            Ok(verified) => {
                result.ok += 1;
                result.leases_verified += u64::from(verified);
            }
            Err(kind) => *result.errors.entry(kind).or_default() += 1,
        }
    }
    result.devices = devices;
    result
}

/// Sends one request and checks its answer; `Ok(true)` when a lease was
/// verified, `Err(kind)` for a failure.
async fn one(
    shared: &Shared,
    device: &mut Device,
    replica: usize,
    verify: bool,
) -> Result<bool, String> {
    let (body, nonce) = device
        .next_body(RequestKind::Heartbeat)
        .map_err(|e| format!("client: {e}"))?;
    let base = shared
        .bases
        .get(replica)
        .ok_or_else(|| "client: no such replica".to_owned())?;
    let url = match shared.target {
        Target::Bare => format!("{base}/bare"),
        Target::Sign => format!("{base}/sign"),
        Target::Heartbeat => format!("{base}/licenses/{}/heartbeat", device.license_id),
    };
    let response = shared
        .client
        .post(url)
        .header("authorization", device.authorization.as_str())
        .header("content-type", "application/json")
        .body(body)
        .timeout(shared.config.timeout)
        .send()
        .await
        .map_err(|e| transport_kind(&e))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| transport_kind(&e))?;
    if status.as_u16() != 200 {
        return Err(http_kind(status, &bytes));
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| "200 without a JSON body")?;
    let field = match shared.target {
        Target::Bare => "ok",
        Target::Sign => "signature",
        Target::Heartbeat => "lease",
    };
    if value.get(field).is_none() {
        return Err(format!("200 without `{field}`"));
    }
    match (&shared.check, verify) {
        (Some(check), true) => check.verify(&value, device, &nonce).map(|()| true),
        _ => Ok(false),
    }
}

/// How a failed answer is counted: `http STATUS CODE`, with the `error` code
/// of the JSON error body when there is one (docs/api.md "Errors").
pub fn http_kind(status: reqwest::StatusCode, body: &[u8]) -> String {
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(|c| format!(" {c}")))
        .unwrap_or_default();
    format!("http {}{code}", status.as_u16())
}

/// How a request that got no answer is counted.
pub fn transport_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connect() {
        "connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "body".to_owned()
    } else {
        "transport".to_owned()
    }
}

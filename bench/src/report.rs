//! What `fleet run` prints: a table for people, or JSON (`--json`) for scripts.
//! Every phase's throughput is also given as a ratio to the two floors of the
//! same run, the numbers that mean something on a noisy machine. The
//! acknowledgements sent beside the heartbeats have a table of their own: they
//! run at a fixed rate, so only their latencies and errors mean something.

use crate::acks;
use crate::fleet::PhaseTime;
use crate::load::{Outcome, Target};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Serialize)]
pub struct Report {
    /// `sled` or `postgres`, and how many replicas served the heartbeats.
    pub store: &'static str,
    pub replicas: usize,
    pub licenses: usize,
    pub concurrency: usize,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    /// Requests per second asked for, or `null` for flat out.
    pub rate: Option<f64>,
    pub issue: PhaseTime,
    pub activate: PhaseTime,
    pub phases: Vec<Phase>,
    /// The acknowledgements measured during the heartbeat phase, or `null`
    /// with `--acks-per-sec 0`.
    pub acks: Option<Acks>,
}

/// Issue 8's target for the acknowledgements' p99 under heartbeat load.
pub const ACK_P99_TARGET_MS: f64 = 25.0;

#[derive(Debug, Serialize)]
pub struct Acks {
    /// Requests per second, all kinds together, sent in turn.
    pub rate_per_sec: f64,
    /// The grace days of each revoke.
    pub revoke_grace_days: u32,
    /// One row per kind: activation, revoke, reinstate (timed separately).
    pub rows: Vec<AckRow>,
}

#[derive(Debug, Serialize)]
pub struct AckRow {
    pub name: &'static str,
    /// Measured requests, answered or not.
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// From when each request was due.
    pub latency: Latency,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Phase {
    pub name: &'static str,
    /// Measured requests, answered or not.
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub elapsed_secs: f64,
    /// Successful answers per second.
    pub throughput_per_sec: f64,
    pub latency: Latency,
    pub leases_verified: u64,
    /// CPU seconds of the server over the window divided by the window: cores used.
    pub server_cpu_cores: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    pub client_cpu_cores: Option<f64>,
    /// Throughput divided by the `sign` floor's.
    pub ratio_to_sign: Option<f64>,
    /// Throughput divided by the `bare` floor's.
    pub ratio_to_bare: Option<f64>,
}

#[allow(clippy::cast_precision_loss)] // Microseconds stay far below 2^52.
fn latency(h: &hdrhistogram::Histogram<u64>) -> Latency {
    let ms = |us: u64| us as f64 / 1000.0;
    Latency {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1000.0,
    }
}

#[allow(clippy::cast_precision_loss)] // Counts stay far below 2^52.
fn phase(outcome: &Outcome) -> Phase {
    let secs = outcome.elapsed.as_secs_f64();
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let errors: u64 = outcome.errors.values().sum();
    Phase {
        name: outcome.target.name(),
        requests: outcome.ok + errors,
        ok: outcome.ok,
        errors: outcome.errors.clone(),
        elapsed_secs: secs,
        throughput_per_sec: per_sec(outcome.ok),
        latency: latency(&outcome.latency_us),
        leases_verified: outcome.leases_verified,
        server_cpu_cores: outcome
            .server_cpu_secs
            .filter(|_| secs > 0.0)
            .map(|c| c / secs),
        server_peak_rss_mib: outcome.server_peak_rss_kib.map(|k| k as f64 / 1024.0),
        client_cpu_cores: outcome
            .client_cpu_secs
            .filter(|_| secs > 0.0)
            .map(|c| c / secs),
        ratio_to_sign: None,
        ratio_to_bare: None,
    }
}

/// The phases with their ratios to the floors measured beside them.
pub fn phases(outcomes: &[Outcome]) -> Vec<Phase> {
    let mut phases: Vec<Phase> = outcomes.iter().map(phase).collect();
    let floor = |target: Target| {
        outcomes
            .iter()
            .zip(&phases)
            .find(|(o, _)| o.target == target)
            .map(|(_, p)| p.throughput_per_sec)
            .filter(|t| *t > 0.0)
    };
    let (sign, bare) = (floor(Target::Sign), floor(Target::Bare));
    for p in &mut phases {
        p.ratio_to_sign = sign.map(|s| p.throughput_per_sec / s);
        p.ratio_to_bare = bare.map(|b| p.throughput_per_sec / b);
    }
    phases
}

/// The acknowledgement rows, in the order of `outcomes`.
pub fn acks(rate_per_sec: f64, outcomes: &[acks::Outcome]) -> Acks {
    let rows = outcomes
        .iter()
        .map(|o| AckRow {
            name: o.kind.name(),
            requests: o.ok + o.errors.values().sum::<u64>(),
            ok: o.ok,
            errors: o.errors.clone(),
            latency: latency(&o.latency_us),
        })
        .collect();
    Acks {
        rate_per_sec,
        revoke_grace_days: acks::REVOKE_GRACE_DAYS,
        rows,
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

impl Report {
    /// The table for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let pacing = self
            .rate
            .map_or_else(|| "flat out".to_owned(), |r| format!("open loop at {r}/s"));
        let _ = writeln!(
            out,
            "fleet: {} licenses, {} connections, {} s per phase after {} s of warm-up, {pacing}; \
             {} store, {} replica(s)",
            self.licenses,
            self.concurrency,
            self.duration_secs,
            self.warmup_secs,
            self.store,
            self.replicas
        );
        let _ = writeln!(
            out,
            "provisioning: issued {} licenses in {:.2} s ({:.0}/s); activated {} in {:.2} s ({:.0}/s)\n",
            self.issue.count,
            self.issue.secs,
            self.issue.per_sec,
            self.activate.count,
            self.activate.secs,
            self.activate.per_sec
        );
        let _ = writeln!(
            out,
            "{:<26} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>10} {:>9} {:>10} {:>7} {:>7}",
            "phase",
            "requests",
            "ok/s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "max ms",
            "errors",
            "srv cores",
            "srv MiB",
            "cli cores",
            "x sign",
            "x bare"
        );
        for p in &self.phases {
            let errors: u64 = p.errors.values().sum();
            let _ = writeln!(
                out,
                "{:<26} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>10} {:>9} {:>10} {:>7} {:>7}",
                p.name,
                p.requests,
                p.throughput_per_sec,
                p.latency.p50_ms,
                p.latency.p99_ms,
                p.latency.p999_ms,
                p.latency.max_ms,
                errors,
                opt(p.server_cpu_cores, 2),
                opt(p.server_peak_rss_mib, 1),
                opt(p.client_cpu_cores, 2),
                opt(p.ratio_to_sign, 3),
                opt(p.ratio_to_bare, 3),
            );
        }
        for p in &self.phases {
            for (kind, n) in &p.errors {
                let _ = writeln!(out, "  {}: {n} x {kind}", p.name);
            }
            if p.leases_verified > 0 {
                let _ = writeln!(
                    out,
                    "  {}: {} leases verified with keys",
                    p.name, p.leases_verified
                );
            }
        }
        if let Some(acks) = &self.acks {
            out.push_str(&acks.human());
        }
        out
    }
}

impl Acks {
    fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nacknowledgements during the heartbeat phase: open loop at {}/s in turn, \
             latency from when each was due; revoke with {} grace days, then reinstate, timed apart",
            self.rate_per_sec, self.revoke_grace_days
        );
        let _ = writeln!(
            out,
            "{:<26} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}  p99 < {ACK_P99_TARGET_MS} ms",
            "kind", "requests", "ok", "p50 ms", "p99 ms", "p999 ms", "max ms", "errors"
        );
        for r in &self.rows {
            let errors: u64 = r.errors.values().sum();
            let met = if r.latency.p99_ms < ACK_P99_TARGET_MS {
                "met"
            } else {
                "NOT met"
            };
            let _ = writeln!(
                out,
                "{:<26} {:>9} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}  {met}",
                r.name,
                r.requests,
                r.ok,
                r.latency.p50_ms,
                r.latency.p99_ms,
                r.latency.p999_ms,
                r.latency.max_ms,
                errors,
            );
        }
        for r in &self.rows {
            for (kind, n) in &r.errors {
                let _ = writeln!(out, "  {}: {n} x {kind}", r.name);
            }
        }
        out
    }
}

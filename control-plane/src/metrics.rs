//! Prometheus metrics: one [`Metrics`] handle per control plane, shared by the
//! HTTP layer (device outcomes, request latency, `GET /metrics`) and the service
//! (sweep results, whichever actor runs the sweep: the HTTP route or the
//! housekeeping loop of `main.rs`).
//!
//! Every series is prefixed `licensing_`. No label carries a license id, a key
//! or a raw URL path: labels come from small closed sets (outcomes, reasons,
//! states) or from the router's route templates, so the number of series is
//! bounded whatever the traffic. The license-state gauge is computed from the
//! store at scrape time and cached for [`LICENSE_COUNT_TTL_SECS`], so frequent
//! scrapes cannot turn into full scans of a big store.
//!
//! This module does no I/O and reads no clock: callers pass `now`.

use crate::domain::license::Status;
use keys::{DenialReason, UnixTime};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a count of licenses by state is reused before the store is read again.
pub const LICENSE_COUNT_TTL_SECS: i64 = 5;

/// The route label of requests that matched no route (the 404 fallback).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// What became of one activation or heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceResult {
    /// A fresh lease was issued.
    Lease,
    /// A signed denial was sent (the appliance locks on it).
    Denial(DenialReason),
    /// Refused as a suspected clone (unsigned 409).
    CloneSuspected,
    /// Refused without a signed answer: bad key, bad signature, bad request, or
    /// a failure of the control plane (the appliance treats these as offline).
    Refused,
}

impl DeviceResult {
    fn outcome(self) -> &'static str {
        match self {
            DeviceResult::Lease => "lease",
            DeviceResult::Denial(_) => "denial",
            DeviceResult::CloneSuspected => "clone_suspected",
            DeviceResult::Refused => "refused",
        }
    }
}

/// Which appliance endpoint a [`DeviceResult`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCall {
    /// Online or air-gapped activation.
    Activation,
    Heartbeat,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    transition: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    /// The route template (`/licenses/{id}/heartbeat`), never the raw path.
    route: String,
    method: String,
    /// `2xx`, `4xx`...
    status: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s: a lease answer is a few ms, a flush under load tens.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The cached count of licenses by state and when it was taken.
#[derive(Debug)]
struct LicenseCounts {
    at: UnixTime,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    heartbeats: Family<OutcomeLabels, Counter>,
    activations: Family<OutcomeLabels, Counter>,
    denials: Family<ReasonLabels, Counter>,
    clone_suspicions: Counter,
    sweep_transitions: Family<TransitionLabels, Counter>,
    sweep_runs: Family<OutcomeLabels, Counter>,
    sweep_last_success: Gauge,
    licenses: Family<StateLabels, Gauge>,
    http: Family<HttpLabels, Histogram, fn() -> Histogram>,
    license_counts: Mutex<Option<LicenseCounts>>,
}

/// The metrics handle: cheap to clone, all clones record into one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("licensing");
        let heartbeats = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "heartbeats",
            "Heartbeats answered, by outcome (lease, denial, clone_suspected, refused)",
            heartbeats.clone(),
        );
        let activations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "activations",
            "Activations (online and air-gapped) answered, by outcome",
            activations.clone(),
        );
        let denials = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "denials",
            "Signed denials sent to appliances, by reason",
            denials.clone(),
        );
        let clone_suspicions = Counter::default();
        registry.register(
            "clone_suspicions",
            "Device requests refused because two boxes seem to share one identity",
            clone_suspicions.clone(),
        );
        let sweep_transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "sweep_transitions",
            "Licenses moved by the health sweep, by transition (expired, suspended)",
            sweep_transitions.clone(),
        );
        let sweep_runs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sweep_runs",
            "Health sweeps run, by outcome (ok, error)",
            sweep_runs.clone(),
        );
        let sweep_last_success = Gauge::default();
        registry.register_with_unit(
            "sweep_last_success_timestamp",
            "Unix time at which the last health sweep completed",
            Unit::Seconds,
            sweep_last_success.clone(),
        );
        let licenses = Family::<StateLabels, Gauge>::default();
        registry.register(
            "licenses",
            "Licenses by state (counted from the store at scrape time, cached a few seconds)",
            licenses.clone(),
        );
        let http = Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency by route template, method and status class",
            Unit::Seconds,
            http.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                heartbeats,
                activations,
                denials,
                clone_suspicions,
                sweep_transitions,
                sweep_runs,
                sweep_last_success,
                licenses,
                http,
                license_counts: Mutex::new(None),
            }),
        }
    }

    /// Records what became of an activation or heartbeat.
    pub fn record_device(&self, call: DeviceCall, result: DeviceResult) {
        let family = match call {
            DeviceCall::Activation => &self.inner.activations,
            DeviceCall::Heartbeat => &self.inner.heartbeats,
        };
        family
            .get_or_create(&OutcomeLabels {
                outcome: result.outcome(),
            })
            .inc();
        match result {
            DeviceResult::Denial(reason) => {
                self.inner
                    .denials
                    .get_or_create(&ReasonLabels {
                        reason: reason.as_str(),
                    })
                    .inc();
            }
            DeviceResult::CloneSuspected => {
                self.inner.clone_suspicions.inc();
            }
            DeviceResult::Lease | DeviceResult::Refused => {}
        }
    }

    /// Records a completed sweep and its transitions.
    pub fn record_sweep(&self, expired: u64, suspended: u64, now: UnixTime) {
        for (transition, n) in [("expired", expired), ("suspended", suspended)] {
            self.inner
                .sweep_transitions
                .get_or_create(&TransitionLabels { transition })
                .inc_by(n);
        }
        self.inner
            .sweep_runs
            .get_or_create(&OutcomeLabels { outcome: "ok" })
            .inc();
        self.inner.sweep_last_success.set(now.secs());
        // The sweep just changed states: the next scrape should count afresh.
        self.invalidate_license_counts();
    }

    /// Records a sweep that failed part way.
    pub fn record_sweep_failure(&self) {
        self.inner
            .sweep_runs
            .get_or_create(&OutcomeLabels { outcome: "error" })
            .inc();
    }

    /// Records one HTTP request. `route` is the matched route template, or
    /// `None` when no route matched.
    pub fn record_request(&self, route: Option<&str>, method: &str, status: u16, secs: f64) {
        let status = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.inner
            .http
            .get_or_create(&HttpLabels {
                route: route.unwrap_or(UNMATCHED_ROUTE).to_owned(),
                method: method.to_owned(),
                status,
            })
            .observe(secs);
    }

    /// Whether the license-state gauge should be recounted at `now`: never
    /// counted, older than the TTL, or the clock stepped back.
    pub fn license_counts_stale(&self, now: UnixTime) -> bool {
        match &*self.counts_lock() {
            None => true,
            Some(c) => {
                now.secs() < c.at.secs() || now.secs() - c.at.secs() >= LICENSE_COUNT_TTL_SECS
            }
        }
    }

    /// Sets the license-state gauge from a fresh count taken at `now`. States
    /// without licenses show 0, so every state always has a series.
    pub fn set_license_counts(&self, now: UnixTime, counts: &HashMap<Status, u64>) {
        for status in Status::ALL {
            let n = counts.get(&status).copied().unwrap_or(0);
            self.inner
                .licenses
                .get_or_create(&StateLabels {
                    state: status.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        *self.counts_lock() = Some(LicenseCounts { at: now });
    }

    fn invalidate_license_counts(&self) {
        *self.counts_lock() = None;
    }

    fn counts_lock(&self) -> std::sync::MutexGuard<'_, Option<LicenseCounts>> {
        // The guarded value is a timestamp: a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is safe to use.
        match self.inner.license_counts.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The registry in the text exposition format (OpenMetrics 1.0, which
    /// Prometheus scrapes natively).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_named_and_labelled_as_documented() {
        let m = Metrics::new();
        m.record_device(DeviceCall::Heartbeat, DeviceResult::Lease);
        m.record_device(
            DeviceCall::Heartbeat,
            DeviceResult::Denial(DenialReason::Revoked),
        );
        m.record_device(DeviceCall::Activation, DeviceResult::CloneSuspected);
        m.record_sweep(2, 1, UnixTime(1_800_000_000));
        m.record_request(Some("/licenses/{id}/heartbeat"), "POST", 200, 0.002);
        m.record_request(None, "GET", 404, 0.001);
        m.set_license_counts(UnixTime(1_800_000_000), &[(Status::Active, 3)].into());
        let text = m.encode();
        for line in [
            "licensing_heartbeats_total{outcome=\"lease\"} 1",
            "licensing_heartbeats_total{outcome=\"denial\"} 1",
            "licensing_activations_total{outcome=\"clone_suspected\"} 1",
            "licensing_denials_total{reason=\"revoked\"} 1",
            "licensing_clone_suspicions_total 1",
            "licensing_sweep_transitions_total{transition=\"expired\"} 2",
            "licensing_sweep_transitions_total{transition=\"suspended\"} 1",
            "licensing_sweep_runs_total{outcome=\"ok\"} 1",
            "licensing_sweep_last_success_timestamp_seconds 1800000000",
            "licensing_licenses{state=\"active\"} 3",
            "licensing_licenses{state=\"grace\"} 0",
            "licensing_http_request_duration_seconds_count{route=\"/licenses/{id}/heartbeat\",method=\"POST\",status=\"2xx\"} 1",
            "licensing_http_request_duration_seconds_count{route=\"unmatched\",method=\"GET\",status=\"4xx\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn license_counts_are_cached_for_the_ttl() {
        let m = Metrics::new();
        let t = UnixTime(1_000);
        assert!(m.license_counts_stale(t));
        m.set_license_counts(t, &HashMap::new());
        assert!(!m.license_counts_stale(t));
        assert!(!m.license_counts_stale(t.plus(LICENSE_COUNT_TTL_SECS - 1)));
        assert!(m.license_counts_stale(t.plus(LICENSE_COUNT_TTL_SECS)));
        // A clock stepped back does not freeze the cache.
        assert!(m.license_counts_stale(UnixTime(999)));
        // A sweep invalidates it.
        m.record_sweep(0, 0, t);
        assert!(m.license_counts_stale(t));
    }
}

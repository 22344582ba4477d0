//! The acknowledgements measured beside the heartbeats (issue 8: "activation and
//! revoke acknowledgement latency under that heartbeat load: p99 < 25 ms").
//!
//! While the control plane's heartbeat phase runs flat out, a low-rate open-loop
//! stream sends three kinds of request in turn, ticket `k` due at
//! `start + k / rate` (the same clock and window as the heartbeat phase):
//!
//! - **activation**: a fresh simulated device activates a license issued for it
//!   and never activated before, with the same code that activates the fleet
//!   ([`fleet::activate_one`]);
//! - **revoke**: `POST /licenses/{id}/revoke` with `{"grace_days": 0}` (expired
//!   at once, docs/api.md) as the admin, on a license set aside for it: issued,
//!   never activated, so no heartbeat ever meets it and the heartbeat phase keeps
//!   getting leases;
//! - **reinstate**: `POST /licenses/{id}/reinstate` on the license the revoke
//!   before it revoked (back to `issued`). It is sent once that revoke is
//!   answered, so it never races it; its latency counts from when it was due or
//!   from that answer, whichever is later.
//!
//! Each kind has its own latency histogram, counted from when the request was
//! due, not from when it was sent (coordinated omission, as in `load`). Revoke
//! and reinstate are timed separately. Requests due during the warm-up are sent
//! but not counted.

use crate::fleet::{self, Device};
use crate::load;
use anyhow::{Context as _, Result};
use hdrhistogram::Histogram;
use reqwest::Client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The grace days of every measured revoke: 0 expires the license at once.
pub const REVOKE_GRACE_DAYS: u32 = 0;

/// One kind of acknowledged request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Activation,
    Revoke,
    Reinstate,
}

impl Kind {
    /// In ticket order: ticket `k` is of kind `ALL[k % 3]`.
    pub const ALL: [Kind; 3] = [Kind::Activation, Kind::Revoke, Kind::Reinstate];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Activation => "ack: activation",
            Kind::Revoke => "ack: revoke",
            Kind::Reinstate => "ack: reinstate",
        }
    }
}

/// How the stream runs.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Requests per second, all kinds together.
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
}

impl Config {
    /// How many requests of each kind the stream sends, warm-up included, so
    /// the pools can be issued beforehand: `ceil(rate * span)` tickets, shared
    /// out in turn.
    pub fn per_kind(&self) -> usize {
        let span = (self.warmup + self.duration).as_secs_f64();
        // At most a few thousand: --acks-per-sec times seconds.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let tickets = (self.rate * span).ceil().max(0.0) as usize;
        // One spare each, against rounding in the due times.
        tickets.div_ceil(Kind::ALL.len()) + 1
    }
}

/// The licenses the stream uses, none of them in the heartbeating fleet.
#[derive(Debug)]
pub struct Pools {
    /// Devices of licenses issued and never activated, one per activation.
    pub activate: Vec<Device>,
    /// Ids of licenses set aside for one revoke and one reinstate each.
    pub revoke: Vec<String>,
}

/// What one kind measured.
#[derive(Debug)]
pub struct Outcome {
    pub kind: Kind,
    /// Latency of every measured request, answered or not, in microseconds.
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    /// Failed requests by kind (`http 409 invalid_transition`, `timeout`, ...).
    pub errors: BTreeMap<String, u64>,
}

struct Shared {
    client: Client,
    base: String,
    authorization: String,
}

/// One request's result: its kind, whether it is in the measured window, its
/// latency and how it ended.
type Done = (Kind, bool, u64, Result<(), String>);

/// Runs the stream from now for `warmup + duration`, then waits for the last
/// answers. Returns one outcome per kind, in [`Kind::ALL`] order.
pub async fn run(
    client: &Client,
    base: &str,
    admin_token: &str,
    pools: Pools,
    config: Config,
) -> Result<Vec<Outcome>> {
    let shared = Arc::new(Shared {
        client: client.clone(),
        base: base.to_owned(),
        authorization: format!("Bearer {admin_token}"),
    });
    let start = Instant::now();
    let measure_from = start + config.warmup;
    let end = measure_from + config.duration;
    let mut activate = pools.activate.into_iter();
    let mut revoke = pools.revoke.into_iter();
    // The revoked license and its revoke's answer, for the reinstate after it.
    let mut revoked: Option<(String, oneshot::Receiver<Instant>)> = None;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0u64.. {
        #[allow(clippy::cast_precision_loss)] // Tickets stay far below 2^52.
        let due = start + Duration::from_secs_f64(k as f64 / config.rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let measured = due >= measure_from;
        let shared = shared.clone();
        #[allow(clippy::cast_possible_truncation)] // `k % 3` is below 3.
        let kind = Kind::ALL[(k % 3) as usize];
        match kind {
            Kind::Activation => {
                let device = activate.next();
                tasks.spawn(async move {
                    let result = match device {
                        Some(mut device) => {
                            fleet::activate_one(&shared.client, &shared.base, &mut device)
                                .await
                                .map_err(|e| e.kind)
                        }
                        None => Err("client: activation pool used up".to_owned()),
                    };
                    (kind, measured, micros_since(due), result)
                });
            }
            Kind::Revoke => {
                let (tx, rx) = oneshot::channel();
                let id = revoke.next();
                revoked = id.clone().map(|id| (id, rx));
                tasks.spawn(async move {
                    let result = match id {
                        Some(id) => {
                            let body = serde_json::json!({ "grace_days": REVOKE_GRACE_DAYS });
                            admin(&shared, &id, "revoke", Some(body), "expired").await
                        }
                        None => Err("client: revoke pool used up".to_owned()),
                    };
                    let latency = micros_since(due);
                    // The reinstate may have nothing to wait for any more: fine.
                    let _ = tx.send(Instant::now());
                    (kind, measured, latency, result)
                });
            }
            Kind::Reinstate => {
                let target = revoked.take();
                tasks.spawn(async move {
                    let Some((id, answered)) = target else {
                        let result = Err("client: no revoke before it".to_owned());
                        return (kind, measured, micros_since(due), result);
                    };
                    // Its revoke's task always sends before it ends.
                    let from = answered.await.map_or(due, |at| at.max(due));
                    let result = admin(&shared, &id, "reinstate", None, "issued").await;
                    (kind, measured, micros_since(from), result)
                });
            }
        }
    }
    let mut outcomes = Vec::with_capacity(Kind::ALL.len());
    for kind in Kind::ALL {
        outcomes.push(Outcome {
            kind,
            latency_us: load::histogram()?,
            ok: 0,
            errors: BTreeMap::new(),
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (kind, measured, micros, result): Done = joined.context("an acknowledgement task")?;
        if !measured {
            continue;
        }
        let Some(outcome) = outcomes.iter_mut().find(|o| o.kind == kind) else {
            continue;
        };
        outcome.latency_us.saturating_record(micros.max(1));
        match result {
            Ok(()) => outcome.ok += 1,
            Err(e) => *outcome.errors.entry(e).or_default() += 1,
        }
    }
    Ok(outcomes)
}

fn micros_since(from: Instant) -> u64 {
    u64::try_from(from.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// `POST /licenses/{id}/{action}` as the admin; the answer must be `200` with
/// the license in `status`.
async fn admin(
    shared: &Shared,
    id: &str,
    action: &str,
    body: Option<Value>,
    status: &str,
) -> Result<(), String> {
    let url = format!("{}/licenses/{id}/{action}", shared.base);
    let mut request = shared
        .client
        .post(url)
        .header("authorization", shared.authorization.as_str());
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.map_err(|e| load::transport_kind(&e))?;
    let code = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| load::transport_kind(&e))?;
    if code.as_u16() != 200 {
        return Err(load::http_kind(code, &bytes));
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| "200 without a JSON body")?;
    match value["status"].as_str() {
        Some(s) if s == status => Ok(()),
        other => Err(format!("200 with status {}", other.unwrap_or("(none)"))),
    }
}

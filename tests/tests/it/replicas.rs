//! Issue 9's two-replica test: two `control-plane serve` processes on one
//! PostgreSQL database. A dozen simulated appliances (`bench::fleet::Device`:
//! real device keys and signed requests) heartbeat through both replicas in
//! turn while revokes, reinstates and rebinds go to either; one replica is
//! killed with SIGKILL mid-load and restarted on the same database. At the end:
//!
//! 1. no acknowledged change is lost: each license's final status is what its
//!    last acknowledged change said, and its audit log holds every
//!    acknowledged change, in order, read through either replica;
//! 2. no lease issued after a revoke's acknowledgement says `active` (and none
//!    at all after a revoke with no grace, which expires the license), judged
//!    two ways: by wall time (a heartbeat sent after the acknowledgement and
//!    answered before the next reinstate was sent) and by the database's own
//!    order (a lease whose `seq` is above the revoke's `lease_seq` and at most
//!    the next reinstate's);
//! 3. each license's lease `seq` strictly increases across both replicas, and a
//!    request replayed against the other replica with a spent counter is
//!    refused as a suspected clone;
//! 4. `control-plane audit verify --store URL` passes.
//!
//! Heartbeats that fail to connect (or are cut off) on the killed replica are
//! expected and counted apart; any other failure fails the test.

use bench::fleet::{self, Device};
use e2e::postgres;
use e2e::procs::{self, ControlPlaneProc, PlaneOptions};
use keys::proto::{DenialResponse, LeaseResponse, RequestKind};
use keys::{LeaseStatus, TrustStore, UnixTime};
use reqwest::Client;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Simulated appliances, one license each.
const APPLIANCES: usize = 12;
/// How long the load runs, and when replica A is killed and restarted.
const RUN: Duration = Duration::from_secs(14);
const KILL_AT: Duration = Duration::from_secs(5);
const RESTART_AT: Duration = Duration::from_secs(8);
/// Each appliance's pause between requests, and the admin's between changes.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(120);
const CHANGE_EVERY: Duration = Duration::from_millis(150);
/// Any one HTTP request's limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A lease an appliance received.
#[derive(Debug, Clone)]
struct Received {
    license: usize,
    seq: u64,
    status: LeaseStatus,
    sent: Instant,
    answered: Instant,
    replica: usize,
}

/// What an admin change asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Revoke { grace_days: u32 },
    Reinstate,
    Rebind,
}

impl Kind {
    fn action(self) -> &'static str {
        match self {
            Kind::Revoke { .. } => "license.revoke",
            Kind::Reinstate => "license.reinstate",
            Kind::Rebind => "license.rebind",
        }
    }
}

/// An admin change sent to a replica; `answer` is set when it was
/// acknowledged (a `200`): the license's status and `lease_seq` it returned.
#[derive(Debug, Clone)]
struct Attempt {
    license: usize,
    kind: Kind,
    replica: usize,
    sent: Instant,
    acked: Option<(Instant, String, u64)>,
}

/// What every task records; checked once the load has stopped.
#[derive(Debug, Default)]
struct Record {
    leases: Vec<Received>,
    attempts: Vec<Attempt>,
    /// Denials by reason (`expired`, `rebound`...).
    denials: BTreeMap<String, u64>,
    activations: u64,
    /// Requests to the killed replica that found no listener.
    refused: u64,
    /// Requests to the killed replica cut off after connecting (in flight at
    /// the kill).
    cut_off: u64,
    /// Anything unexpected; the test fails when not empty.
    errors: Vec<String>,
}

impl Record {
    fn count_unanswered(&mut self, e: &reqwest::Error) {
        if e.is_connect() {
            self.refused += 1;
        } else {
            self.cut_off += 1;
        }
    }
}

type Shared = Arc<Mutex<Record>>;

fn note_error(record: &Shared, error: String) {
    record.lock().unwrap().errors.push(error);
}

#[test]
fn two_replicas_heartbeats_admin_changes_and_a_sigkill() {
    let Some(store) = postgres::fresh_database("replicas") else {
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let kek_file = tmp.path().join("kek");
    let kek = kek_file.to_string_lossy();
    // `init` writes the KEK file every replica reads.
    let init = procs::control_plane(&["init", "--json", "--store", &store, "--kek-file", &kek]);
    assert_eq!(init.code, Some(0), "init --store: {init:?}");
    let token = init.json()["admin_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no admin_token in {init:?}"))
        .to_owned();
    let replica = || {
        let any_port = "127.0.0.1:0".parse().unwrap();
        ControlPlaneProc::start_on_postgres(
            &store,
            &kek_file,
            &token,
            any_port,
            PlaneOptions::default(),
        )
    };
    let mut a = replica();
    let b = replica();
    let replicas = [a.url.clone(), b.url.clone()];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap();

    // Licenses issued and appliances activated through both replicas in turn.
    let (trust, devices) = runtime.block_on(async {
        let trust = trust_of(&client, &replicas[1]).await;
        let mut devices = Vec::new();
        for i in 0..APPLIANCES {
            let base = &replicas[i % 2];
            let (id, key) = issue(&client, base, &token, i).await;
            let mut device = Device::new(i, id, key).unwrap();
            fleet::activate_one(&client, &replicas[(i + 1) % 2], &mut device)
                .await
                .unwrap_or_else(|e| panic!("activating appliance {i}: {e}"));
            devices.push(device);
        }
        (Arc::new(trust), devices)
    });
    let ids: Vec<String> = devices.iter().map(|d| d.license_id.clone()).collect();
    eprintln!(
        "replicas: {} and {}; {APPLIANCES} appliances activated after {:?}",
        replicas[0],
        replicas[1],
        started.elapsed()
    );

    let record: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load_start = Instant::now();
    let mut tasks = Vec::new();
    for (i, device) in devices.into_iter().enumerate() {
        tasks.push(runtime.spawn(appliance(
            i,
            device,
            client.clone(),
            replicas.clone(),
            trust.clone(),
            record.clone(),
            stop.clone(),
        )));
    }
    tasks.push(runtime.spawn(admin(
        ids.clone(),
        client.clone(),
        replicas.clone(),
        token.clone(),
        record.clone(),
        stop.clone(),
    )));

    // The schedule of the load (not a wait for any state): kill A mid-load,
    // bring it back on the same database and port, let both serve again.
    std::thread::sleep(KILL_AT);
    a.kill();
    let killed_at = Instant::now();
    std::thread::sleep(RESTART_AT.saturating_sub(load_start.elapsed()));
    a.restart();
    let restarted_at = Instant::now();
    std::thread::sleep(RUN.saturating_sub(load_start.elapsed()));
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    let record = Arc::try_unwrap(record).unwrap().into_inner().unwrap();
    let after_restart = record
        .leases
        .iter()
        .filter(|l| l.replica == 0 && l.sent > restarted_at)
        .count();
    eprintln!(
        "load: {:?}; A killed at {:?}, back at {:?}; {} leases ({after_restart} from A after its \
         restart), {} activations, denials {:?}, {} admin changes ({} acknowledged); on A, {} \
         refused and {} cut off",
        load_start.elapsed(),
        killed_at - load_start,
        restarted_at - load_start,
        record.leases.len(),
        record.activations,
        record.denials,
        record.attempts.len(),
        record.attempts.iter().filter(|c| c.acked.is_some()).count(),
        record.refused,
        record.cut_off,
    );
    assert!(
        record.errors.is_empty(),
        "unexpected failures:\n{}",
        record.errors.join("\n")
    );
    assert!(
        record.refused > 0,
        "no request found replica A down: the kill was not inside the load"
    );
    assert!(
        after_restart > 0,
        "no appliance got a lease from the restarted replica"
    );
    for kind in ["license.revoke", "license.reinstate", "license.rebind"] {
        assert!(
            record
                .attempts
                .iter()
                .any(|c| c.acked.is_some() && c.kind.action() == kind),
            "no {kind} was acknowledged: the load did not exercise it"
        );
    }

    runtime.block_on(async {
        let admin = Admin {
            client: &client,
            token: &token,
        };
        check_no_change_lost(&admin, &replicas, &ids, &record).await;
        check_replay_refused(&admin, &replicas, &trust).await;
    });
    check_no_active_after_revoke(&record);
    check_seq_increases(&record);

    let verified = procs::control_plane(&["audit", "verify", "--store", &store]);
    assert_eq!(verified.code, Some(0), "audit verify: {verified:?}");
    assert!(
        verified.stdout.contains("audit chain intact"),
        "audit verify: {verified:?}"
    );
    eprintln!(
        "{}; the whole test took {:?}",
        verified.stdout.trim(),
        started.elapsed()
    );
}

// ----- the load -----

/// One appliance: a heartbeat to each replica in turn until `stop`. A `rebound`
/// denial (support moved the license) replaces the box with a new one (a new
/// device key), which activates through the replicas in turn.
async fn appliance(
    index: usize,
    mut device: Device,
    client: Client,
    replicas: [String; 2],
    trust: Arc<TrustStore>,
    record: Shared,
    stop: Arc<AtomicBool>,
) {
    let mut turn = index;
    let mut needs_activation = false;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(HEARTBEAT_EVERY).await;
        turn += 1;
        let replica = turn % 2;
        let base = &replicas[replica];
        if needs_activation {
            match fleet::activate_one(&client, base, &mut device).await {
                Ok(()) => {
                    needs_activation = false;
                    record.lock().unwrap().activations += 1;
                }
                // Still expired or suspended: tried again after the next change.
                Err(e) if e.kind.starts_with("http 403") => {}
                Err(e) if replica == 0 && e.kind == "connect" => {
                    record.lock().unwrap().refused += 1;
                }
                Err(e) if replica == 0 && !e.kind.starts_with("http") => {
                    record.lock().unwrap().cut_off += 1;
                }
                Err(e) => note_error(&record, format!("appliance {index}: activate: {e}")),
            }
            continue;
        }
        let (body, nonce) = device.next_body(RequestKind::Heartbeat).unwrap();
        let url = format!("{base}/licenses/{}/heartbeat", device.license_id);
        let sent = Instant::now();
        let answer = client
            .post(&url)
            .header("authorization", device.authorization.as_str())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let answer = match answer {
            Ok(response) => {
                let status = response.status().as_u16();
                response.bytes().await.map(|body| (status, body))
            }
            Err(e) => Err(e),
        };
        let answered = Instant::now();
        let (status, body) = match answer {
            Ok(answer) => answer,
            // Replica A is the one killed: no connection, or one cut off.
            Err(e) if replica == 0 => {
                record.lock().unwrap().count_unanswered(&e);
                continue;
            }
            Err(e) => {
                note_error(&record, format!("appliance {index}: POST {url}: {e}"));
                continue;
            }
        };
        match status {
            200 => match verify_lease(&trust, &body, &device.license_id, &nonce) {
                Ok((seq, lease_status)) => record.lock().unwrap().leases.push(Received {
                    license: index,
                    seq,
                    status: lease_status,
                    sent,
                    answered,
                    replica,
                }),
                Err(e) => note_error(&record, format!("appliance {index}: {url}: {e}")),
            },
            403 => match verify_denial(&trust, &body, &device.license_id, &nonce) {
                Ok(reason) => {
                    if reason == "rebound" {
                        device = Device::new(
                            index,
                            device.license_id.clone(),
                            license_key(&device.authorization),
                        )
                        .unwrap();
                        needs_activation = true;
                    }
                    *record.lock().unwrap().denials.entry(reason).or_default() += 1;
                }
                Err(e) => note_error(&record, format!("appliance {index}: {url}: {e}")),
            },
            _ => note_error(
                &record,
                format!(
                    "appliance {index}: {url}: {status}: {}",
                    String::from_utf8_lossy(&body)
                ),
            ),
        }
    }
}

/// The license key back from `Bearer pk_...`.
fn license_key(authorization: &str) -> String {
    authorization.trim_start_matches("Bearer ").to_owned()
}

/// Verifies a lease answer against the pinned roots: signed by a certified
/// key, for this license and this request's nonce. Its `seq` and status.
fn verify_lease(
    trust: &TrustStore,
    body: &[u8],
    license: &str,
    nonce: &str,
) -> Result<(u64, LeaseStatus), String> {
    let answer: LeaseResponse =
        serde_json::from_slice(body).map_err(|e| format!("not a lease answer: {e}"))?;
    let chain: Vec<&str> = answer.chain.iter().map(String::as_str).collect();
    let now = UnixTime::now();
    let signer = trust
        .verify_chain_at(&chain, now)
        .map_err(|e| format!("lease chain: {e}"))?;
    let lease = trust
        .verify_at::<keys::Lease>(&answer.lease, &signer, now)
        .map_err(|e| format!("lease: {e}"))?
        .into_claims();
    if lease.sub != license || lease.nonce != nonce {
        return Err(format!(
            "a lease for {} and nonce {}, not this request's",
            lease.sub, lease.nonce
        ));
    }
    Ok((lease.seq, lease.status))
}

/// Verifies a signed denial for this license and nonce; its reason.
fn verify_denial(
    trust: &TrustStore,
    body: &[u8],
    license: &str,
    nonce: &str,
) -> Result<String, String> {
    let answer: DenialResponse =
        serde_json::from_slice(body).map_err(|e| format!("not a denial: {e}"))?;
    let chain: Vec<&str> = answer.chain.iter().map(String::as_str).collect();
    let now = UnixTime::now();
    let signer = trust
        .verify_chain_at(&chain, now)
        .map_err(|e| format!("denial chain: {e}"))?;
    let denial = trust
        .verify_at::<keys::Denial>(&answer.denial, &signer, now)
        .map_err(|e| format!("denial: {e}"))?
        .into_claims();
    if denial.sub != license || denial.nonce != nonce {
        return Err(format!(
            "a denial for {} and nonce {}, not this request's",
            denial.sub, denial.nonce
        ));
    }
    Ok(denial.reason.as_str().to_owned())
}

/// The admin: one change at a time, to the replicas in turn, on the licenses in
/// turn, each valid in the state the license is in: an active license is
/// revoked (with 2 grace days, or 0: expired at once) or rebound; a revoked one
/// is reinstated or rebound. A change that got no answer (the replica was
/// killed) may or may not have landed: the license is read back through the
/// other replica before its next change.
async fn admin(
    ids: Vec<String>,
    client: Client,
    replicas: [String; 2],
    token: String,
    record: Shared,
    stop: Arc<AtomicBool>,
) {
    let admin = Admin {
        client: &client,
        token: &token,
    };
    let mut status: Vec<Option<String>> = vec![Some("active".to_owned()); ids.len()];
    let mut step = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(CHANGE_EVERY).await;
        step += 1;
        let license = step % ids.len();
        let round = step / ids.len();
        // Each round the licenses swap replicas, so each gets changes through both.
        let replica = (step + round) % 2;
        let id = &ids[license];
        let current = match &status[license] {
            Some(current) => current.clone(),
            None => {
                let (code, body) = admin
                    .call(&replicas[1], "GET", &format!("/licenses/{id}"), None)
                    .await
                    .unwrap_or_else(|e| panic!("GET {id} on B: {e}"));
                assert_eq!(code, 200, "GET {id}: {body}");
                body["status"].as_str().unwrap().to_owned()
            }
        };
        // Each license in turn: revoke (2 grace days in even rounds, 0 in odd
        // ones: expired at once) or reinstate, whichever its state allows,
        // and every third visit a rebind; staggered by license so that every
        // kind, and rebinds in grace and when expired, come within two rounds.
        let kind = if (round + license) % 3 == 2 {
            Kind::Rebind
        } else if current == "active" {
            Kind::Revoke {
                grace_days: if round.is_multiple_of(2) { 2 } else { 0 },
            }
        } else {
            Kind::Reinstate
        };
        let (path, body) = match kind {
            Kind::Revoke { grace_days } => ("revoke", Some(json!({ "grace_days": grace_days }))),
            Kind::Reinstate => ("reinstate", None),
            Kind::Rebind => ("rebind", Some(json!({"unbind": true}))),
        };
        let sent = Instant::now();
        let answer = admin
            .call(
                &replicas[replica],
                "POST",
                &format!("/licenses/{id}/{path}"),
                body,
            )
            .await;
        let acked_at = Instant::now();
        let mut attempt = Attempt {
            license,
            kind,
            replica,
            sent,
            acked: None,
        };
        match answer {
            Ok((200, body)) => {
                let now = body["status"].as_str().unwrap_or_default().to_owned();
                let seq = body["lease_seq"].as_u64().unwrap_or_else(|| {
                    panic!("{path} {id}: no lease_seq in {body}");
                });
                status[license] = Some(now.clone());
                attempt.acked = Some((acked_at, now, seq));
            }
            Ok((code, body)) => {
                note_error(&record, format!("{path} {id} on {replica}: {code}: {body}"));
                status[license] = None;
            }
            Err(e) if replica == 0 => {
                record.lock().unwrap().count_unanswered(&e);
                eprintln!("{path} {id} on A got no answer (killed): {e}");
                status[license] = None;
            }
            Err(e) => {
                note_error(&record, format!("{path} {id} on B: {e}"));
                status[license] = None;
            }
        }
        record.lock().unwrap().attempts.push(attempt);
    }
}

/// Admin API calls with the super_admin's token.
struct Admin<'a> {
    client: &'a Client,
    token: &'a str,
}

impl Admin<'_> {
    async fn call(
        &self,
        base: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{base}{path}"))
            .bearer_auth(self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await?;
        let code = response.status().as_u16();
        let text = response.text().await?;
        Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn get(&self, base: &str, path: &str) -> Value {
        let (code, body) = self
            .call(base, "GET", path, None)
            .await
            .unwrap_or_else(|e| panic!("GET {base}{path}: {e}"));
        assert_eq!(code, 200, "GET {base}{path}: {body}");
        body
    }
}

async fn issue(client: &Client, base: &str, token: &str, i: usize) -> (String, String) {
    let admin = Admin { client, token };
    let (code, body) = admin
        .call(
            base,
            "POST",
            "/licenses",
            Some(json!({"customer": format!("replica-co-{i}"), "entitlements": {"product": "gateway"}})),
        )
        .await
        .unwrap();
    assert_eq!(code, 201, "issue: {body}");
    (
        body["license"]["id"].as_str().unwrap().to_owned(),
        body["license_key"].as_str().unwrap().to_owned(),
    )
}

async fn trust_of(client: &Client, base: &str) -> TrustStore {
    let text = client
        .get(format!("{base}/.well-known/licensing-trust.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    TrustStore::from_json(&text).unwrap()
}

// ----- the checks -----

/// Check 1: each license's final status is its last acknowledged change's
/// (or, after an unanswered one, what it was read back as), through both
/// replicas; and its audit log, read through each replica, holds exactly the
/// acknowledged changes in order, plus at most the unanswered ones.
async fn check_no_change_lost(
    admin: &Admin<'_>,
    replicas: &[String; 2],
    ids: &[String],
    record: &Record,
) {
    for (license, id) in ids.iter().enumerate() {
        let attempts: Vec<&Attempt> = record
            .attempts
            .iter()
            .filter(|c| c.license == license)
            .collect();
        let finals: Vec<String> = {
            let mut finals = Vec::new();
            for base in replicas {
                let body = admin.get(base, &format!("/licenses/{id}")).await;
                finals.push(body["status"].as_str().unwrap().to_owned());
            }
            finals
        };
        assert_eq!(finals[0], finals[1], "{id}: the replicas disagree");
        if let Some(last) = attempts.last()
            && let Some((_, status, _)) = &last.acked
        {
            assert_eq!(
                &finals[0], status,
                "{id}: the last acknowledged change ({:?}) said {status}",
                last.kind
            );
        }

        let mut audits = Vec::new();
        for base in replicas {
            let body = admin
                .get(base, &format!("/audit?target={id}&limit=1000"))
                .await;
            let changes: Vec<Value> = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| {
                    matches!(
                        r["action"].as_str(),
                        Some("license.revoke" | "license.reinstate" | "license.rebind")
                    )
                })
                .cloned()
                .collect();
            audits.push(changes);
        }
        assert_eq!(
            audits[0], audits[1],
            "{id}: the replicas' audit logs differ"
        );
        assert!(
            audit_explained_by(&attempts, &audits[0]),
            "{id}: the audit log is not the acknowledged changes in order (plus at most the \
             unanswered ones)\nattempts: {attempts:#?}\nrecords: {:#?}",
            audits[0]
                .iter()
                .map(|r| (&r["seq"], &r["action"], &r["metadata"]))
                .collect::<Vec<_>>()
        );
    }
}

/// Whether `records` (a license's revoke, reinstate and rebind audit records,
/// in order) are exactly `attempts` in order: each acknowledged attempt has
/// its record, an unanswered one has its record or none, and no record is
/// left over. A record is an attempt's when it is the same action (with the
/// same grace) and, for an acknowledged revoke or reinstate, led to the status
/// the answer gave. Matched as a subsequence, by dynamic programming: an
/// unanswered reinstate followed by an acknowledged one must not take the
/// latter's record.
fn audit_explained_by(attempts: &[&Attempt], records: &[Value]) -> bool {
    let matches = |attempt: &Attempt, r: &Value| {
        let to = r["metadata"]["to"].as_str();
        r["action"].as_str() == Some(attempt.kind.action())
            && match attempt.kind {
                Kind::Revoke { grace_days } => {
                    r["metadata"]["grace_days"].as_u64() == Some(u64::from(grace_days))
                }
                _ => true,
            }
            && match (&attempt.acked, attempt.kind) {
                (Some((_, status, _)), Kind::Revoke { .. } | Kind::Reinstate) => {
                    to == Some(status.as_str())
                }
                _ => true,
            }
    };
    // explained[i][j]: attempts[i..] are exactly records[j..].
    let (n, m) = (attempts.len(), records.len());
    let mut explained = vec![vec![false; m + 1]; n + 1];
    explained[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            let taken = j < m && matches(attempts[i], &records[j]) && explained[i + 1][j + 1];
            let skipped = attempts[i].acked.is_none() && explained[i + 1][j];
            explained[i][j] = taken || skipped;
        }
    }
    explained[0][0]
}

/// Check 2: after a revoke was acknowledged, no lease says `active` until the
/// next reinstate: neither one whose heartbeat was sent after the
/// acknowledgement and answered before the reinstate was sent, nor one whose
/// `seq` is above the revoke's `lease_seq` and at most the reinstate's.
fn check_no_active_after_revoke(record: &Record) {
    let mut windows = 0;
    let (mut judged, mut by_time_count, mut by_seq_count) = (0, 0, 0);
    for (i, revoke) in record.attempts.iter().enumerate() {
        let (Kind::Revoke { .. }, Some((acked_at, revoked_to, revoke_seq))) =
            (revoke.kind, &revoke.acked)
        else {
            continue;
        };
        let reinstate = record.attempts[i + 1..]
            .iter()
            .find(|c| c.license == revoke.license && c.kind == Kind::Reinstate);
        let until_sent = reinstate.map(|c| c.sent);
        // An unanswered reinstate has no seq: only the wall-time judgement then.
        let seq_bound = match reinstate {
            None => Some(u64::MAX),
            Some(Attempt {
                acked: Some((_, _, seq)),
                ..
            }) => Some(*seq),
            Some(_) => None,
        };
        windows += 1;
        for lease in record.leases.iter().filter(|l| l.license == revoke.license) {
            let by_time =
                lease.sent >= *acked_at && until_sent.is_none_or(|until| lease.answered <= until);
            let by_seq =
                seq_bound.is_some_and(|bound| lease.seq > *revoke_seq && lease.seq <= bound);
            by_time_count += usize::from(by_time);
            by_seq_count += usize::from(by_seq);
            if by_time || by_seq {
                judged += 1;
                // In grace a lease says `grace`; expired (0 grace days), the
                // answer is a denial, never a lease.
                let allowed = revoked_to == "grace" && lease.status == LeaseStatus::Grace;
                assert!(
                    allowed,
                    "license {}: a lease with status {:?} (seq {}, from replica {}, its heartbeat \
                     sent {:.3} s after the acknowledgement) after a revoke to {revoked_to} \
                     acknowledged by replica {} with lease_seq {revoke_seq}",
                    revoke.license,
                    lease.status,
                    lease.seq,
                    lease.replica,
                    seconds_between(*acked_at, lease.sent),
                    revoke.replica
                );
            }
        }
    }
    eprintln!(
        "{windows} revoke windows, {judged} leases inside them ({by_time_count} by wall time, \
         {by_seq_count} by seq): none active, none after an expiry"
    );
    assert!(
        by_time_count > 0 && by_seq_count > 0,
        "too few leases fell inside a revoke window: nothing was checked"
    );
}

/// `to - from` in seconds, negative when `to` is earlier.
fn seconds_between(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(after) => after.as_secs_f64(),
        None => -(from - to).as_secs_f64(),
    }
}

/// Check 3a: each appliance's leases, in the order it received them from both
/// replicas, have strictly increasing `seq`.
fn check_seq_increases(record: &Record) {
    let mut last: BTreeMap<usize, &Received> = BTreeMap::new();
    for lease in &record.leases {
        if let Some(previous) = last.get(&lease.license) {
            assert!(
                lease.seq > previous.seq,
                "license {}: seq {} (replica {}) after seq {} (replica {})",
                lease.license,
                lease.seq,
                lease.replica,
                previous.seq,
                previous.replica
            );
        }
        last.insert(lease.license, lease);
    }
}

/// Check 3b: clone detection across replicas. A new box heartbeats twice
/// through A; its first heartbeat, replayed through B (a clone with a copy of
/// the box's state), is refused there, its counter being spent, and recorded
/// as a suspected clone.
async fn check_replay_refused(admin: &Admin<'_>, replicas: &[String; 2], trust: &TrustStore) {
    let (id, key) = issue(admin.client, &replicas[1], admin.token, APPLIANCES).await;
    let mut device = Device::new(APPLIANCES, id.clone(), key).unwrap();
    fleet::activate_one(admin.client, &replicas[0], &mut device)
        .await
        .unwrap_or_else(|e| panic!("activating the box to clone: {e}"));
    let (first, first_nonce) = device.next_body(RequestKind::Heartbeat).unwrap();
    let (second, second_nonce) = device.next_body(RequestKind::Heartbeat).unwrap();
    let url = |base: &str| format!("{base}/licenses/{id}/heartbeat");
    let post = |base: &str, body: Vec<u8>| {
        admin
            .client
            .post(url(base))
            .header("authorization", device.authorization.as_str())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, nonce) in [(&first, &first_nonce), (&second, &second_nonce)] {
        let response = post(&replicas[0], body.clone()).await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "a heartbeat through A");
        let bytes = response.bytes().await.unwrap();
        verify_lease(trust, &bytes, &id, nonce).unwrap();
    }
    let replayed = post(&replicas[1], first).await.unwrap();
    let code = replayed.status().as_u16();
    let text = replayed.text().await.unwrap();
    assert_ne!(
        code, 200,
        "a spent counter replayed through B got a lease: {text}"
    );
    let audit = admin
        .get(&replicas[1], &format!("/audit?target={id}&limit=1000"))
        .await;
    let suspected = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["action"].as_str() == Some("license.clone_suspected"));
    assert!(
        suspected,
        "the replay through B ({code} {text}) left no license.clone_suspected: {audit}"
    );
}

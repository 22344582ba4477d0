//! Scenario `crash` (issue 6, scenario 7, the control plane's half; DESIGN.md
//! "Durability"): a response reflects durable state. The real `control-plane`
//! binary serves a temp data directory while eight client threads issue
//! licenses, revoke and reinstate them, rebind them, regenerate their keys, and
//! activate and heartbeat them as appliances would. At a random moment the
//! server gets SIGKILL. Then, with the server stopped, `audit verify` must find
//! the hash chain intact; after a restart every acknowledged change must be
//! there: each license's status, binding and key as last acknowledged (or as
//! the one request in flight at the kill left it), its `lease_seq` at least the
//! highest acknowledged lease `seq`, and an audit record for every acknowledged
//! action. Then the next cycle starts on the same directory. Any loss fails the
//! test with a `LOST:` message; the summary line says `lost 0` only because
//! every check before it passed.
//!
//! Each client thread owns its licenses and acts on them one request at a time,
//! so a license has at most one request in flight when the server dies, and the
//! model of what may be stored stays exact: what was last acknowledged, or what
//! the request in flight would have made. After each restart the model adopts
//! what the server shows, so every cycle starts exact again.
//!
//! That the test can fail was checked by hand: with the store's `durable()`
//! returning without waiting for the group commit's flush (sled then writes
//! only on its own 500 ms timer), a run failed at cycle 3 with `LOST: lease_seq
//! of lic_… is 0 after SIGKILL, but a lease with seq 1 was acknowledged`.
//!
//! The load per cycle is kept small (the kill within 350 ms, at most 16
//! licenses per worker) so that 100 cycles take about 90 s on two cores.
//!
//! `DURABILITY_CYCLES` changes the number of cycles (default 100, issue 6);
//! `DURABILITY_SEED` replays the random choices of a run (printed at the start),
//! though not the scheduling; `TEST_LOG` turns on the server's logs.

use super::support::Device;
use control_plane::clock::{Clock as _, SystemClock};
use keys::PrivateKey;
use keys::proto::{Components, RequestKind};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Concurrent client threads.
const WORKERS: usize = 8;
const DEFAULT_CYCLES: usize = 100;
/// Each worker issues licenses often until it owns this many, then now and then
/// (so that every cycle has issues to lose) up to [`MAX_LICENSES_PER_WORKER`].
const LICENSES_PER_WORKER: usize = 8;
const MAX_LICENSES_PER_WORKER: usize = 16;
/// The kill comes this many milliseconds after the load starts (uniformly).
const KILL_AFTER_MS: std::ops::Range<u64> = 20..350;
/// How long a child process may take to start listening or to exit.
const PROCESS_DEADLINE: Duration = Duration::from_secs(30);
/// Connect, read and write timeout of one HTTP request.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Environment variables of the binary that must not leak in from the caller's shell.
const SERVER_ENV: [&str; 8] = [
    "CONTROL_PLANE_CONFIG",
    "CONTROL_PLANE_DATA_DIR",
    "CONTROL_PLANE_KEK_FILE",
    "CONTROL_PLANE_KEK",
    "CONTROL_PLANE_LOG_FORMAT",
    "CONTROL_PLANE_LISTEN",
    "CONTROL_PLANE_ISSUER",
    "CONTROL_PLANE_LOG",
];

#[test]
fn scenario_crash_acknowledged_changes_survive_sigkill() {
    let cycles = std::env::var("DURABILITY_CYCLES")
        .ok()
        .map(|v| v.parse::<usize>().expect("DURABILITY_CYCLES is a number"))
        .unwrap_or(DEFAULT_CYCLES)
        .max(1);
    let seed = std::env::var("DURABILITY_SEED")
        .ok()
        .map(|v| v.parse::<u64>().expect("DURABILITY_SEED is a number"))
        .unwrap_or_else(|| {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).unwrap();
            u64::from_le_bytes(bytes)
        });
    println!("scenario crash: {cycles} cycles, {WORKERS} workers, DURABILITY_SEED={seed}");
    let started = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    // The KEK file defaults to `<data-dir>.kek`, beside the data directory: inside `dir`.
    let data = dir.path().join("data");
    let admin = init(&data);
    let mut rng = Rng::new(seed);
    let mut workers: Vec<Worker> = (0..WORKERS)
        .map(|index| Worker::new(index, rng.next()))
        .collect();
    let mut totals = Totals::default();
    let mut audit = AuditLog::default();

    let mut server = Server::start(&data);
    for cycle in 1..=cycles {
        let kill_after = Duration::from_millis(
            KILL_AFTER_MS.start + rng.below(KILL_AFTER_MS.end - KILL_AFTER_MS.start),
        );
        let stop = AtomicBool::new(false);
        let client = Client {
            addr: server.addr,
            admin: &admin,
        };
        let mut load = Stats::default();
        std::thread::scope(|scope| {
            let handles: Vec<_> = workers
                .iter_mut()
                .map(|worker| {
                    let stop = &stop;
                    scope.spawn(move || worker.run(&client, stop))
                })
                .collect();
            // The fault injection: SIGKILL at a random moment of the load.
            std::thread::sleep(kill_after);
            server.kill();
            stop.store(true, Ordering::SeqCst);
            for handle in handles {
                match handle.join() {
                    Ok(stats) => load.add(&stats),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });

        // sled locks the directory: the chain is checked while nothing serves it.
        let chain = audit_verify(&data);
        totals.audit_verifies += 1;

        server = Server::start(&data);
        let client = Client {
            addr: server.addr,
            admin: &admin,
        };
        let checks = check_and_resync(&client, &mut workers, &mut audit);
        println!(
            "cycle {cycle:>3}: killed after {:>3} ms; acknowledged {:>4} ({}); in flight {} \
             (landed {}); checked {} licenses, {} keys, {} new audit records; {chain}",
            kill_after.as_millis(),
            load.acknowledged(),
            load.describe(),
            load.in_flight,
            checks.landed,
            checks.licenses,
            checks.keys,
            checks.audit_records,
        );
        totals.load.add(&load);
        totals.checks.add(&checks);
    }
    server.kill();
    let chain = audit_verify(&data);
    totals.audit_verifies += 1;

    let licenses: usize = workers.iter().map(|w| w.licenses.len()).sum();
    println!(
        "scenario crash: {cycles} cycles of SIGKILL under mixed load in {:.1} s; {} acknowledged \
         operations ({}), {:.0} per cycle; lost 0; {} in flight at a kill, {} of them landed; \
         {licenses} licenses, {} license checks, {} key checks; audit verify passed {} times, \
         final {chain}",
        started.elapsed().as_secs_f64(),
        totals.load.acknowledged(),
        totals.load.describe(),
        totals.load.acknowledged() as f64 / cycles as f64,
        totals.load.in_flight,
        totals.checks.landed,
        totals.checks.licenses,
        totals.checks.keys,
        totals.audit_verifies,
    );
    // The load must mix every kind of change, or a loss of that kind goes unseen.
    for op in [
        "issue",
        "activate",
        "heartbeat",
        "revoke",
        "reinstate",
        "rebind",
        "regenerate",
    ] {
        assert!(
            totals.load.get(op) > 0,
            "the load made no {op}: {}",
            totals.load.describe()
        );
    }
}

// ----- the model -----

/// What a license's record may look like, as far as the test can tell from outside.
#[derive(Debug, Clone, PartialEq)]
struct Expect {
    status: String,
    grace_expires_at: Option<String>,
    lease_seq: u64,
    device_key: Option<String>,
    components: Option<Value>,
    /// Whether a box was ever bound (`binding.bound_at` is set).
    bound: bool,
}

impl Expect {
    fn from_view(view: &Value) -> Expect {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        Expect {
            status: text(&view["status"]).unwrap_or_else(|| panic!("no status in {view}")),
            grace_expires_at: text(&view["grace_expires_at"]),
            lease_seq: view["lease_seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("no lease_seq in {view}")),
            device_key: text(&view["binding"]["device_key"]),
            components: Some(view["binding"]["components"].clone()).filter(|c| !c.is_null()),
            bound: !view["binding"]["bound_at"].is_null(),
        }
    }

    /// Equal, except that the grace deadline of a revoke whose answer was never
    /// seen is unknown.
    fn matches(&self, other: &Expect, any_grace_deadline: bool) -> bool {
        let mut other = other.clone();
        if any_grace_deadline {
            other.grace_expires_at = self.grace_expires_at.clone();
        }
        *self == other
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Revoke { grace_days: u32 },
    Reinstate,
    Activate,
    Heartbeat,
    Rebind,
    Regenerate,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Revoke { .. } => "revoke",
            Op::Reinstate => "reinstate",
            Op::Activate => "activate",
            Op::Heartbeat => "heartbeat",
            Op::Rebind => "rebind",
            Op::Regenerate => "regenerate",
        }
    }

    /// The audit action the operation records (heartbeats record none).
    fn audit_action(self) -> Option<&'static str> {
        match self {
            Op::Revoke { .. } => Some("license.revoke"),
            Op::Reinstate => Some("license.reinstate"),
            Op::Activate => Some("license.activate"),
            Op::Heartbeat => None,
            Op::Rebind => Some("license.rebind"),
            Op::Regenerate => Some("license.regenerate"),
        }
    }
}

/// The request that was in flight when the server died: it may or may not have landed.
struct Pending {
    op: Op,
    /// The record if it landed.
    landed: Expect,
    /// For a rebind: the box it moves the license to.
    new_device: Option<Device>,
}

/// A license as one worker knows it.
struct License {
    id: String,
    /// The license key last acknowledged.
    key: String,
    /// The record as last acknowledged.
    acked: Expect,
    pending: Option<Pending>,
    /// The box bound to the license, or the one that will activate it.
    device: Device,
    /// Devices made for this license so far (each rebind moves to a new one).
    generation: u64,
    /// Audit records this license must have, by action: those found at the last
    /// check (durable since) plus those acknowledged after it.
    audited: BTreeMap<&'static str, u64>,
    /// A regenerate was acknowledged since the last check: check the key.
    key_changed: bool,
}

/// One client thread and the licenses it owns.
struct Worker {
    index: usize,
    rng: Rng,
    licenses: Vec<License>,
    /// Issues in flight at a kill, over the whole run: each may have made a license
    /// the test never heard of.
    unknown_issues: u64,
}

#[derive(Debug, Clone, Copy)]
struct Client<'a> {
    addr: SocketAddr,
    admin: &'a str,
}

/// The request did not get a complete answer: not acknowledged.
struct InFlight;

impl Worker {
    fn new(index: usize, seed: u64) -> Worker {
        Worker {
            index,
            rng: Rng::new(seed),
            licenses: Vec::new(),
            unknown_issues: 0,
        }
    }

    fn device(&self, license: usize, generation: u64) -> Device {
        let tag = ((self.index as u64) << 48) | ((license as u64) << 24) | generation;
        let mut seed = [0u8; 32];
        let mut mix = Rng::new(tag);
        for chunk in seed.chunks_mut(8) {
            chunk.copy_from_slice(&mix.next().to_le_bytes());
        }
        let components: Components = [
            ("machine_id", format!("m-{tag:x}")),
            ("product_uuid", format!("u-{tag:x}")),
            ("mac", format!("a-{tag:x}")),
            ("cpu", "xeon-8".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Device {
            key: PrivateKey::from_seed(&seed),
            components,
            counter: 0,
        }
    }

    /// Sends requests until `stop` or the first request without a complete answer.
    fn run(&mut self, client: &Client, stop: &AtomicBool) -> Stats {
        let mut stats = Stats::default();
        while !stop.load(Ordering::SeqCst) {
            let owned = self.licenses.len();
            let issue = match owned {
                0 => true,
                n if n < LICENSES_PER_WORKER => self.rng.below(4) == 0,
                n if n < MAX_LICENSES_PER_WORKER => self.rng.below(25) == 0,
                _ => false,
            };
            let step = if issue {
                self.issue(client, &mut stats)
            } else {
                let i = self.rng.below(self.licenses.len() as u64) as usize;
                let op = self.choose(i);
                self.act(client, i, op, &mut stats)
            };
            if step.is_err() {
                stats.in_flight += 1;
                break;
            }
        }
        stats
    }

    fn issue(&mut self, client: &Client, stats: &mut Stats) -> Result<(), InFlight> {
        let body = json!({
            "customer": format!("customer-{}", self.index),
            "entitlements": {"product": "gateway", "features": ["vpn"], "limits": {"seats": 10}},
        });
        let reply = match http(
            client.addr,
            "POST",
            "/licenses",
            Some(client.admin),
            Some(&body),
        ) {
            Ok(reply) => reply,
            Err(_) => {
                self.unknown_issues += 1;
                return Err(InFlight);
            }
        };
        assert_eq!(reply.status, 201, "issue refused: {}", reply.body);
        let view = &reply.body["license"];
        let acked = Expect::from_view(view);
        assert_eq!(acked.status, "issued", "{view}");
        let device = self.device(self.licenses.len(), 0);
        self.licenses.push(License {
            id: view["id"].as_str().unwrap().to_owned(),
            key: reply.body["license_key"].as_str().unwrap().to_owned(),
            acked,
            pending: None,
            device,
            generation: 0,
            audited: BTreeMap::from([("license.issue", 1)]),
            key_changed: false,
        });
        stats.count("issue");
        Ok(())
    }

    /// A random operation that the license's state allows.
    fn choose(&mut self, i: usize) -> Op {
        let license = &self.licenses[i];
        let status = license.acked.status.as_str();
        let mut choices: Vec<(Op, u64)> = vec![(Op::Rebind, 1), (Op::Regenerate, 1)];
        if matches!(status, "issued" | "active" | "grace") {
            let grace_days = if self.rng.below(3) == 0 {
                0
            } else {
                1 + self.rng.below(30) as u32
            };
            choices.push((Op::Revoke { grace_days }, 2));
            if license.acked.device_key.is_some() {
                choices.push((Op::Heartbeat, 8));
            } else {
                choices.push((Op::Activate, 5));
            }
        }
        if matches!(status, "grace" | "expired") {
            choices.push((Op::Reinstate, 3));
        }
        let total: u64 = choices.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.below(total);
        for (op, weight) in choices {
            if pick < weight {
                return op;
            }
            pick -= weight;
        }
        unreachable!()
    }

    fn act(
        &mut self,
        client: &Client,
        i: usize,
        op: Op,
        stats: &mut Stats,
    ) -> Result<(), InFlight> {
        let new_device =
            (op == Op::Rebind).then(|| self.device(i, self.licenses[i].generation + 1));
        let license = &mut self.licenses[i];
        let id = license.id.clone();
        let now = SystemClock.now();
        let mut landed = license.acked.clone();
        let (path, token, body) = match op {
            Op::Revoke { grace_days } => {
                if grace_days == 0 {
                    landed.status = "expired".into();
                    landed.grace_expires_at = None;
                } else {
                    landed.status = "grace".into();
                }
                (
                    format!("/licenses/{id}/revoke"),
                    client.admin.to_owned(),
                    json!({"grace_days": grace_days}),
                )
            }
            Op::Reinstate => {
                landed.status = if landed.bound { "active" } else { "issued" }.into();
                landed.grace_expires_at = None;
                (
                    format!("/licenses/{id}/reinstate"),
                    client.admin.to_owned(),
                    json!({}),
                )
            }
            Op::Rebind => {
                let to = &new_device.as_ref().unwrap().components;
                landed.device_key = None;
                landed.components = Some(json!(to));
                (
                    format!("/licenses/{id}/rebind"),
                    client.admin.to_owned(),
                    json!({"fingerprint": to}),
                )
            }
            Op::Regenerate => (
                format!("/licenses/{id}/regenerate"),
                client.admin.to_owned(),
                json!({}),
            ),
            Op::Activate | Op::Heartbeat => {
                let kind = if op == Op::Activate {
                    if landed.status == "issued" {
                        landed.status = "active".into();
                    }
                    landed.device_key = Some(license.device.key.public().to_b64());
                    landed.components = Some(json!(license.device.components));
                    landed.bound = true;
                    RequestKind::Activate
                } else {
                    RequestKind::Heartbeat
                };
                landed.lease_seq += 1;
                let request = license.device.request(kind, &id, &license.key, now);
                (
                    format!("/licenses/{id}/{}", op.name()),
                    license.key.clone(),
                    serde_json::to_value(&request).unwrap(),
                )
            }
        };
        let reply = match http(client.addr, "POST", &path, Some(&token), Some(&body)) {
            Ok(reply) => reply,
            Err(_) => {
                license.pending = Some(Pending {
                    op,
                    landed,
                    new_device,
                });
                return Err(InFlight);
            }
        };
        assert_eq!(
            reply.status,
            200,
            "{} of {id} refused; the license was {:?}: {}",
            op.name(),
            license.acked,
            reply.body
        );
        match op {
            Op::Activate | Op::Heartbeat => {
                let lease = reply.body["lease"].as_str().unwrap();
                let claims = keys::inspect(lease).unwrap().claims;
                assert_eq!(claims["sub"], json!(id), "{claims}");
                assert_eq!(claims["dev"], json!(landed.device_key), "{claims}");
                assert_eq!(
                    claims["seq"],
                    json!(landed.lease_seq),
                    "{} of {id}: {claims}",
                    op.name()
                );
            }
            Op::Regenerate => {
                assert_eq!(
                    Expect::from_view(&reply.body["license"]),
                    landed,
                    "{}",
                    reply.body
                );
                license.key = reply.body["license_key"].as_str().unwrap().to_owned();
                license.key_changed = true;
            }
            Op::Revoke { .. } | Op::Reinstate | Op::Rebind => {
                let seen = Expect::from_view(&reply.body);
                assert!(
                    seen.matches(&landed, matches!(op, Op::Revoke { .. })),
                    "{} of {id} answered {seen:?}, expected {landed:?}",
                    op.name()
                );
                landed = seen;
            }
        }
        license.acked = landed;
        if let Some(device) = new_device {
            license.device = device;
            license.generation += 1;
        }
        if let Some(action) = op.audit_action() {
            *license.audited.entry(action).or_default() += 1;
        }
        stats.count(op.name());
        Ok(())
    }
}

// ----- the checks after a restart -----

#[derive(Debug, Default)]
struct Checks {
    licenses: u64,
    keys: u64,
    audit_records: u64,
    /// Requests in flight at the kill that turned out to have landed.
    landed: u64,
}

impl Checks {
    fn add(&mut self, other: &Checks) {
        self.licenses += other.licenses;
        self.keys += other.keys;
        self.audit_records += other.audit_records;
        self.landed += other.landed;
    }
}

/// Checks every license and the audit log against the model, then makes the
/// model what the server shows.
fn check_and_resync(client: &Client, workers: &mut [Worker], audit: &mut AuditLog) -> Checks {
    let mut checks = Checks::default();
    // First the records: what each license looks like now, and its key where it changed.
    let mut seen: HashMap<String, (Expect, Option<String>)> = HashMap::new();
    for license in workers.iter_mut().flat_map(|w| w.licenses.iter_mut()) {
        let id = &license.id;
        let reply = http(
            client.addr,
            "GET",
            &format!("/licenses/{id}"),
            Some(client.admin),
            None,
        )
        .unwrap_or_else(|e| panic!("GET /licenses/{id} after the restart: {e}"));
        assert_eq!(
            reply.status, 200,
            "LOST: the acknowledged issue of {id} did not survive SIGKILL: {}",
            reply.body
        );
        let now = Expect::from_view(&reply.body);
        assert!(
            now.lease_seq >= license.acked.lease_seq,
            "LOST: lease_seq of {id} is {} after SIGKILL, but a lease with seq {} was acknowledged",
            now.lease_seq,
            license.acked.lease_seq
        );
        let as_acked = now.matches(&license.acked, false);
        let as_landed = license
            .pending
            .as_ref()
            .is_some_and(|p| now.matches(&p.landed, matches!(p.op, Op::Revoke { .. })));
        assert!(
            as_acked || as_landed,
            "LOST: license {id} after SIGKILL is {now:?}\n  last acknowledged: {:?}\n  in flight at \
             the kill: {:?}\n  view: {}",
            license.acked,
            license.pending.as_ref().map(|p| (p.op, &p.landed)),
            reply.body
        );
        if as_landed && !as_acked {
            checks.landed += 1;
        }
        checks.licenses += 1;

        let regenerating = license
            .pending
            .as_ref()
            .is_some_and(|p| p.op == Op::Regenerate);
        let key = if license.key_changed || regenerating {
            let reply = http(
                client.addr,
                "POST",
                &format!("/licenses/{id}/reveal"),
                Some(client.admin),
                None,
            )
            .unwrap_or_else(|e| panic!("reveal of {id} after the restart: {e}"));
            assert_eq!(reply.status, 200, "reveal of {id}: {}", reply.body);
            *license.audited.entry("license.reveal").or_default() += 1;
            let key = reply.body["license_key"].as_str().unwrap().to_owned();
            // A regenerate in flight may have replaced the key with one never seen.
            assert!(
                key == license.key || regenerating,
                "LOST: the acknowledged regenerate of {id} did not survive SIGKILL: the key \
                 is not the one it answered"
            );
            if key != license.key {
                checks.landed += 1;
            }
            checks.keys += 1;
            Some(key)
        } else {
            None
        };
        seen.insert(id.clone(), (now, key));
    }

    // Then the audit log: a record for every acknowledged action, and no more than
    // the requests in flight explain. The records up to the last one read at the
    // previous check are still there, unchanged, if that one is: `audit verify`
    // found the chain intact, and each record's hash covers its predecessor's.
    let mut cursor = None;
    if let Some((seq, hash)) = &audit.last {
        let path = format!("/audit?limit=1&cursor={}", seq - 1);
        let reply = http(client.addr, "GET", &path, Some(client.admin), None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let item = &reply.body["items"][0];
        assert!(
            reply.status == 200 && item["seq"] == json!(seq) && item["hash"] == json!(hash),
            "LOST: audit record {seq} (hash {hash}), read after an earlier restart, is now {}",
            reply.body
        );
        cursor = Some(*seq);
    }
    let counts = &mut audit.counts;
    loop {
        let path = match cursor {
            Some(c) => format!("/audit?limit=1000&cursor={c}"),
            None => "/audit?limit=1000".to_owned(),
        };
        let reply = http(client.addr, "GET", &path, Some(client.admin), None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        for item in reply.body["items"].as_array().unwrap() {
            let action = item["action"].as_str().unwrap().to_owned();
            assert_ne!(
                action, "license.clone_suspected",
                "the load tripped clone detection: {item}"
            );
            let target = item["target"].as_str().unwrap().to_owned();
            *counts.entry((target, action)).or_default() += 1;
            checks.audit_records += 1;
            let seq = item["seq"].as_u64().unwrap();
            let hash = item["hash"].as_str().unwrap().to_owned();
            audit.last = Some((seq, hash));
        }
        match reply.body["next_cursor"].as_u64() {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut known = HashSet::new();
    for license in workers.iter_mut().flat_map(|w| w.licenses.iter_mut()) {
        known.insert(license.id.clone());
        let in_flight = license.pending.as_ref().and_then(|p| p.op.audit_action());
        for action in [
            "license.issue",
            "license.revoke",
            "license.reinstate",
            "license.activate",
            "license.rebind",
            "license.regenerate",
            "license.reveal",
        ] {
            let acked = license.audited.get(action).copied().unwrap_or(0);
            let found = counts
                .get(&(license.id.clone(), action.to_owned()))
                .copied()
                .unwrap_or(0);
            assert!(
                found >= acked,
                "LOST: {acked} acknowledged {action} of {} but {found} audit records",
                license.id
            );
            let most = acked + u64::from(in_flight == Some(action));
            assert!(
                found <= most,
                "{found} {action} audit records of {}, but {acked} acknowledged and {in_flight:?} \
                 in flight",
                license.id,
            );
            // What was found is durable: later checks expect at least as much.
            license.audited.insert(action, found);
        }
    }
    // Issues in flight at a kill may have made licenses the test never heard of.
    let unknown: u64 = counts
        .iter()
        .filter(|((target, action), _)| action == "license.issue" && !known.contains(target))
        .map(|(_, n)| n)
        .sum();
    let in_flight_issues: u64 = workers.iter().map(|w| w.unknown_issues).sum();
    assert!(
        unknown <= in_flight_issues,
        "{unknown} license.issue records of unknown licenses, but only {in_flight_issues} issues \
         were ever in flight at a kill"
    );

    // Last, the model adopts what survived.
    for license in workers.iter_mut().flat_map(|w| w.licenses.iter_mut()) {
        let (now, key) = seen.remove(&license.id).unwrap();
        if let Some(pending) = license.pending.take()
            && let Some(device) = pending.new_device
            && now.components.as_ref() == Some(&json!(device.components))
        {
            license.device = device;
            license.generation += 1;
        }
        if let Some(key) = key {
            license.key = key;
        }
        license.acked = now;
        license.key_changed = false;
    }
    checks
}

/// The audit log as read so far.
#[derive(Debug, Default)]
struct AuditLog {
    /// Records by (target, action).
    counts: HashMap<(String, String), u64>,
    /// The seq and hash of the last record read.
    last: Option<(u64, String)>,
}

// ----- counters -----

#[derive(Debug, Default)]
struct Stats {
    acknowledged: BTreeMap<&'static str, u64>,
    in_flight: u64,
}

impl Stats {
    fn count(&mut self, op: &'static str) {
        *self.acknowledged.entry(op).or_default() += 1;
    }

    fn get(&self, op: &str) -> u64 {
        self.acknowledged.get(op).copied().unwrap_or(0)
    }

    fn acknowledged(&self) -> u64 {
        self.acknowledged.values().sum()
    }

    fn add(&mut self, other: &Stats) {
        for (op, n) in &other.acknowledged {
            *self.acknowledged.entry(op).or_default() += n;
        }
        self.in_flight += other.in_flight;
    }

    fn describe(&self) -> String {
        self.acknowledged
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Default)]
struct Totals {
    load: Stats,
    checks: Checks,
    audit_verifies: u64,
}

/// xorshift64*, seeded through splitmix64: reproducible choices without a dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` for choosing operations.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ----- processes -----

fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_control-plane"));
    for name in SERVER_ENV {
        command.env_remove(name);
    }
    let logs = std::env::var_os("TEST_LOG").is_some();
    command
        .env("CONTROL_PLANE_LOG", if logs { "info" } else { "off" })
        // Eight clients hammer a few licenses from one address: the limits
        // would turn load into 429s, and this test is about durability.
        .env("CONTROL_PLANE_ACTIVATIONS_PER_MINUTE", "0")
        .env("CONTROL_PLANE_HEARTBEATS_PER_MINUTE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Waits for a child to exit, polling with a deadline; kills it if it overruns.
fn wait(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {PROCESS_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `control-plane init`; returns the admin token.
fn init(data: &Path) -> String {
    let mut child = command()
        .args(["init", "--json", "--data-dir"])
        .arg(data)
        .spawn()
        .unwrap();
    let status = wait(&mut child, "control-plane init");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "control-plane init: {status}: {out}");
    let printed: Value = serde_json::from_str(&out).unwrap();
    printed["admin_token"].as_str().unwrap().to_owned()
}

/// `control-plane audit verify` on a stopped server's directory; returns what it said.
fn audit_verify(data: &Path) -> String {
    let mut child = command()
        .args(["audit", "verify", "--data-dir"])
        .arg(data)
        .spawn()
        .unwrap();
    let status = wait(&mut child, "control-plane audit verify");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "control-plane audit verify: {status}: {out}"
    );
    out.trim().to_owned()
}

/// A running `control-plane serve`, killed when dropped (also when a check panics).
#[derive(Debug)]
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts the server on a free loopback port; returns once it listens.
    fn start(data: &Path) -> Server {
        let mut child = command()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let (lines, announced) = mpsc::channel();
        // Reads stdout to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match announced.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on http://") {
                        server.addr = addr.parse().unwrap();
                        return server;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("control-plane serve did not listen within {PROCESS_DEADLINE:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "control-plane serve exited before listening: {:?}",
                    server.child.try_wait()
                ),
            }
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reaps the process.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

// ----- a minimal blocking HTTP/1.1 client -----

#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
}

/// One request on a fresh connection (`Connection: close`). `Err` means no complete
/// answer arrived: refused, reset, timed out or cut short.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Reply, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let content = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        content.len()
    );
    if body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(&content);
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<Reply, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete head in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| format!("head: {e}"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
            assert!(
                !name.eq_ignore_ascii_case("transfer-encoding"),
                "the test client reads only Content-Length bodies: {head}"
            );
        }
    }
    let body = &raw[end + 4..];
    let length = length.ok_or_else(|| format!("no Content-Length in {head:?}"))?;
    if body.len() != length {
        return Err(format!(
            "body of {} bytes, Content-Length {length}",
            body.len()
        ));
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
    };
    Ok(Reply { status, body })
}

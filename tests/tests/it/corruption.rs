//! Damage to the appliance's local store: sled's files truncated, bit-flipped,
//! zero-filled, padded with garbage or deleted, over many seeds.
//!
//! DESIGN.md "Appliance": "A deleted or corrupted sled never grants time: it
//! means activate again online". Whatever happens to the files, an agent opened
//! on them may run no longer than the last lease it verified allows; a store it
//! cannot read locks it (`no_valid_lease`) or leaves it unlicensed; and the way
//! back is the runbook "store lost → support unbinds → activate again".

use appliance::agent::{Agent, AgentError, Status};
use appliance::clock::ManualClock;
use appliance::eval::{LockReason, State};
use appliance::fingerprint::RawFacts;
use appliance::transport::HttpTransport;
use e2e::{DAY, Plane, agent, agent_with, machine};
use keys::UnixTime;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once, mpsc};
use std::time::{Duration, Instant};

/// Seeds per damage kind; seven kinds make 245 damaged stores.
const SEEDS_PER_KIND: u64 = 35;

/// How long one damaged store may take to open and evaluate before it counts
/// as a hang (sled looping on bad data would be a bug too).
const CASE_DEADLINE: Duration = Duration::from_secs(20);

/// A small xorshift64* generator: the damage must be reproducible from its seed,
/// and the workspace has no `rand`.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Truncate,
    FlipBytes,
    DeleteFile,
    DeleteDir,
    ZeroFill,
    AppendGarbage,
    Combination,
}

const KINDS: [Kind; 7] = [
    Kind::Truncate,
    Kind::FlipBytes,
    Kind::DeleteFile,
    Kind::DeleteDir,
    Kind::ZeroFill,
    Kind::AppendGarbage,
    Kind::Combination,
];

/// Every file under `dir`, sorted so a seed always picks the same one.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Applies one damage of `kind` to the store in `dir`; returns what it did.
fn damage(dir: &Path, kind: Kind, rng: &mut Rng) -> String {
    let all = files(dir);
    if kind == Kind::DeleteDir {
        std::fs::remove_dir_all(dir).unwrap();
        return "delete the directory".into();
    }
    if kind == Kind::Combination {
        let n = 2 + rng.below(2);
        return (0..n)
            .map(|_| {
                let one = [
                    Kind::Truncate,
                    Kind::FlipBytes,
                    Kind::DeleteFile,
                    Kind::ZeroFill,
                    Kind::AppendGarbage,
                ][usize::try_from(rng.below(5)).unwrap()];
                damage(dir, one, rng)
            })
            .collect::<Vec<_>>()
            .join(", then ");
    }
    if all.is_empty() {
        return "nothing left to damage".into();
    }
    let file = &all[usize::try_from(rng.below(all.len() as u64)).unwrap()];
    let name = file.strip_prefix(dir).unwrap().display().to_string();
    let mut bytes = std::fs::read(file).unwrap();
    let len = bytes.len() as u64;
    let did = match kind {
        Kind::Truncate => {
            // Half the time a torn tail (the last quarter), half anywhere.
            let to = if len == 0 {
                0
            } else if rng.below(2) == 0 {
                len - 1 - rng.below(len.div_ceil(4))
            } else {
                rng.below(len)
            };
            bytes.truncate(usize::try_from(to).unwrap());
            format!("truncate {name} from {len} to {to} bytes")
        }
        Kind::FlipBytes => {
            let n = 1 + rng.below(8);
            let mut at = Vec::new();
            for _ in 0..n {
                if len == 0 {
                    break;
                }
                let i = usize::try_from(rng.below(len)).unwrap();
                bytes[i] ^= rng.byte().max(1);
                at.push(i);
            }
            format!("flip bytes {at:?} of {name} ({len} bytes)")
        }
        Kind::DeleteFile => {
            std::fs::remove_file(file).unwrap();
            return format!("delete {name}");
        }
        Kind::ZeroFill => {
            if len == 0 || rng.below(2) == 0 {
                bytes.fill(0);
                format!("zero all {len} bytes of {name}")
            } else {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(4096)).min(len);
                let range = usize::try_from(start).unwrap()..usize::try_from(end).unwrap();
                bytes[range].fill(0);
                format!("zero bytes {start}..{end} of {name} ({len} bytes)")
            }
        }
        Kind::AppendGarbage => {
            let n = 1 + rng.below(4096);
            bytes.extend((0..n).map(|_| rng.byte()));
            format!("append {n} random bytes to {name} ({len} bytes)")
        }
        Kind::DeleteDir | Kind::Combination => unreachable!(),
    };
    std::fs::write(file, bytes).unwrap();
    did
}

/// The activated store every damaged copy starts from, and what it held.
struct Pristine {
    /// Keeps the template alive.
    _base: tempfile::TempDir,
    /// The store as the agent left it (sled's log only), and as it is after
    /// one more open and close (sled then adds a snapshot and grows its file).
    templates: [PathBuf; 2],
    trust: keys::TrustStore,
    machine: RawFacts,
    /// The appliance's time when the store was closed.
    closed_at: UnixTime,
    /// The end of the last verified lease, and its sequence number.
    exp: UnixTime,
    seq: u64,
}

/// A plane, a license, an agent activated and heartbeated twice while time
/// moves on; the store is then closed and copied to a template.
async fn pristine(plane: &Plane, id: &str, key: &str) -> Pristine {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("state");
    let box7 = machine(7);
    let (agent, clock) = agent(plane, &dir, box7.clone());
    agent.activate(&plane.url, id, key).await.unwrap();
    for _ in 0..2 {
        plane.advance(600);
        clock.advance(600);
        let outcome = agent.heartbeat_once().await;
        assert!(
            matches!(outcome, appliance::agent::Outcome::Renewed { .. }),
            "{outcome:?}"
        );
    }
    clock.advance(30);
    let status = agent.check();
    assert!(matches!(status.state, State::Active { .. }), "{status:?}");
    let exp = status.lease_expires_at.unwrap();
    let seq = status.lease_seq.unwrap();
    assert_eq!(seq, 3, "activation and two heartbeats: {status:?}");
    drop(agent);
    let as_left = base.path().join("as-left");
    copy_dir(&dir, &as_left);

    // Dropping the agent must release sled's lock on the directory at once: an
    // agent opened on it right after must read the very same state.
    let again = agent_with(
        &dir,
        &plane.trust,
        Arc::new(HttpTransport::new(None).unwrap()),
        Arc::new(ManualClock::new(status.now)),
        box7.clone(),
    );
    let reopened = again.status();
    assert_eq!(
        reopened, status,
        "the store must reopen unchanged after the agent is dropped (sled's lock released)"
    );
    drop(again);

    let restarted = base.path().join("restarted");
    copy_dir(&dir, &restarted);
    Pristine {
        _base: base,
        templates: [as_left, restarted],
        trust: plane.trust.clone(),
        machine: box7,
        closed_at: status.now,
        exp,
        seq,
    }
}

/// How a damaged store ended up, judged when an agent first opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// The newest lease survived: the damage hit bytes sled does not use.
    Unchanged,
    /// sled silently rolled back to an older record, holding an earlier lease:
    /// less time, not more.
    OlderLease,
    /// sled silently rolled back to a record saved before the first lease
    /// arrived: locked, `no_valid_lease`.
    BeforeFirstLease,
    /// sled would not open the store: locked, `no_valid_lease`.
    WouldNotOpen,
    /// sled opened the store but the record failed its own checks: locked,
    /// `no_valid_lease`.
    RecordRejected,
    /// sled came back empty: the agent cannot tell it was ever activated.
    Unlicensed,
    Other,
}

/// What one damaged store did.
struct Case {
    damage: String,
    verdict: Verdict,
    /// Breaches of the property; each is a bug.
    violations: Vec<String>,
    first: Status,
}

/// The times an agent on a damaged store is evaluated at: just after the store
/// was closed, a day later, a minute before the lease ends, when it ends, and a
/// day after. Each seed opens the agent at one of them and lets time pass
/// through the rest, restarting the agent (a new open of the same files) at
/// some of them.
fn times(p: &Pristine) -> [UnixTime; 5] {
    [
        p.closed_at.plus(60),
        p.closed_at.plus(DAY),
        p.exp.plus(-60),
        p.exp,
        p.exp.plus(DAY),
    ]
}

fn open_at(p: &Pristine, dir: &Path, at: UnixTime) -> (Agent, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(at));
    let agent = agent_with(
        dir,
        &p.trust,
        // Nothing is sent: the agent is judged on what it holds.
        Arc::new(HttpTransport::new(None).unwrap()),
        clock.clone(),
        p.machine.clone(),
    );
    (agent, clock)
}

fn run_case(p: &Pristine, kind: Kind, seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("state");
    let template = usize::try_from(seed % 2).unwrap();
    copy_dir(&p.templates[template], &dir);
    let damage = damage(&dir, kind, &mut rng);

    let times = times(p);
    let start = usize::try_from(rng.below(times.len() as u64)).unwrap();
    let (mut agent, mut clock) = open_at(p, &dir, times[start]);
    let mut violations = Vec::new();
    let mut first = None;
    for (i, &at) in times.iter().enumerate().skip(start) {
        if i > start {
            if rng.below(2) == 0 {
                clock.advance(at.secs() - times[i - 1].secs());
            } else {
                drop(agent);
                (agent, clock) = open_at(p, &dir, at);
            }
        }
        let checked = agent.check();
        let status = agent.status();
        if checked != status {
            violations.push(format!(
                "check and status disagree at {}: {checked:?} vs {status:?}",
                at.secs()
            ));
        }
        violations.extend(judge(p, &status));
        first.get_or_insert(status);
    }
    drop(agent);
    let first = first.unwrap();
    Case {
        damage: format!("{} store: {damage}", ["as-left", "restarted"][template]),
        verdict: verdict(p, &first),
        violations,
        first,
    }
}

/// The property: never more time than the last verified lease allows, and a
/// store that could not be read never runs.
fn judge(p: &Pristine, status: &Status) -> Vec<String> {
    let mut wrong = Vec::new();
    let at = status.now.secs();
    if status.runs {
        if status.lease_expires_at.is_none_or(|e| e > p.exp) {
            wrong.push(format!(
                "at {at}: runs on a lease ending {:?}, after the last verified lease's {}",
                status.lease_expires_at,
                p.exp.secs()
            ));
        }
        if status.now >= p.exp {
            wrong.push(format!(
                "at {at}: runs at or after the last verified lease's end {}",
                p.exp.secs()
            ));
        }
        if status.lease_seq.is_none_or(|s| s > p.seq) {
            wrong.push(format!(
                "at {at}: runs on lease seq {:?}, newer than {}",
                status.lease_seq, p.seq
            ));
        }
    }
    let no_valid_lease = State::Locked {
        reason: LockReason::NoValidLease,
    };
    // No record at all (unreadable, or came back empty): never runs.
    if status.license_id.is_none()
        && !(status.state == State::Unlicensed || status.state == no_valid_lease)
    {
        wrong.push(format!("at {at}: no record, yet {:?}", status.state));
    }
    // A store the agent found damaged (it says why) locks with no_valid_lease.
    if status.license_id.is_none() && status.last_error.is_some() && status.state != no_valid_lease
    {
        wrong.push(format!(
            "at {at}: damage detected ({:?}), yet {:?}",
            status.last_error, status.state
        ));
    }
    wrong
}

fn verdict(p: &Pristine, first: &Status) -> Verdict {
    let no_valid_lease = State::Locked {
        reason: LockReason::NoValidLease,
    };
    match first.lease_seq {
        Some(seq) if seq == p.seq && first.lease_expires_at == Some(p.exp) => Verdict::Unchanged,
        Some(seq) if seq < p.seq => Verdict::OlderLease,
        Some(_) => Verdict::Other,
        None if first.state == no_valid_lease => match (&first.license_id, &first.last_error) {
            (Some(_), _) => Verdict::BeforeFirstLease,
            (None, Some(why)) if why.contains("cannot be opened") => Verdict::WouldNotOpen,
            (None, Some(_)) => Verdict::RecordRejected,
            (None, None) => Verdict::Other,
        },
        None if first.state == State::Unlicensed => Verdict::Unlicensed,
        None => Verdict::Other,
    }
}

/// The name of the threads that run cases, followed by the seed.
const CASE_THREAD: &str = "corruption-seed-";

/// Panics on a case's thread (caught or not: `LocalStore` catches sled's).
static CASE_PANICS: AtomicU32 = AtomicU32::new(0);
/// Panics on sled's own threads ("log flusher", "sled-io-N"); sled 0.34 marks
/// its IO pool broken for the whole process after one.
static SLED_THREAD_PANICS: AtomicU32 = AtomicU32::new(0);

/// Counts panics by thread, then hands them on to the previous hook. Other
/// tests' threads are left alone.
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            match std::thread::current().name() {
                Some(name) if name.starts_with(CASE_THREAD) => {
                    CASE_PANICS.fetch_add(1, Ordering::Relaxed);
                }
                Some(name) if name.starts_with("sled-io") || name == "log flusher" => {
                    SLED_THREAD_PANICS.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            previous(info);
        }));
    });
}

/// Runs one case on its own thread, so that a panic or a hang is reported with
/// its seed instead of taking the whole sweep down.
fn guarded(p: &Arc<Pristine>, kind: Kind, seed: u64) -> Result<Case, String> {
    let (tx, rx) = mpsc::channel();
    let p = p.clone();
    std::thread::Builder::new()
        .name(format!("{CASE_THREAD}{seed}"))
        .spawn(move || {
            let _ = tx.send(run_case(&p, kind, seed));
        })
        .unwrap();
    match rx.recv_timeout(CASE_DEADLINE) {
        Ok(case) => Ok(case),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "hung for more than {CASE_DEADLINE:?} (the thread is left behind)"
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("panicked".into()),
    }
}

/// The issue's property over 245 seeds: truncate, flip bytes, delete a file,
/// delete the directory, zero-fill, append garbage, and combinations.
#[tokio::test]
async fn damaged_stores_never_grant_more_time_than_the_last_verified_lease() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let p = Arc::new(pristine(&plane, &id, &key).await);
    count_panics();
    let started = Instant::now();

    let mut counts: BTreeMap<Kind, BTreeMap<Verdict, u32>> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut others = Vec::new();
    let mut rejected: BTreeMap<String, u32> = BTreeMap::new();
    for (k, &kind) in KINDS.iter().enumerate() {
        for n in 0..SEEDS_PER_KIND {
            let seed = k as u64 * 1000 + n;
            match guarded(&p, kind, seed) {
                Ok(case) => {
                    *counts
                        .entry(kind)
                        .or_default()
                        .entry(case.verdict)
                        .or_default() += 1;
                    if case.verdict == Verdict::RecordRejected {
                        let why = case.first.last_error.clone().unwrap_or_default();
                        *rejected.entry(why).or_default() += 1;
                    }
                    if case.verdict == Verdict::Other {
                        others.push(format!(
                            "seed {seed} ({kind:?}, {}): {:?}",
                            case.damage, case.first
                        ));
                    }
                    for v in case.violations {
                        failures.push(format!("seed {seed} ({kind:?}, {}): {v}", case.damage));
                    }
                }
                Err(why) => failures.push(format!("seed {seed} ({kind:?}): {why}")),
            }
        }
    }
    eprintln!(
        "corruption: {} damaged stores in {:.1?}",
        KINDS.len() as u64 * SEEDS_PER_KIND,
        started.elapsed()
    );
    for (kind, verdicts) in &counts {
        eprintln!("corruption: {kind:?}: {verdicts:?}");
    }
    eprintln!("corruption: why records were rejected: {rejected:?}");
    for other in &others {
        eprintln!("corruption: other: {other}");
    }
    eprintln!(
        "corruption: panics on case threads (sled's, caught by the store): {}; on sled's threads: {}",
        CASE_PANICS.load(Ordering::Relaxed),
        SLED_THREAD_PANICS.load(Ordering::Relaxed)
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // sled still works in this process: an undamaged copy reads back whole,
    // and the control plane (sled too) still writes.
    for which in 0..2 {
        let base = damaged_copy(&p, which, |_| {});
        let (agent, _) = open_at(&p, &base.path().join("state"), p.closed_at.plus(60));
        let status = agent.check();
        assert_eq!(verdict(&p, &status), Verdict::Unchanged, "{status:?}");
        assert!(status.runs, "{status:?}");
    }
    plane.issue("after the sweep").await;
}

/// A store damaged as `damage` does, copied from the pristine store `which`
/// (0: as the agent left it, 1: after a restart).
fn damaged_copy(p: &Pristine, which: usize, damage: impl FnOnce(&Path)) -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    copy_dir(&p.templates[which], &base.path().join("state"));
    damage(&base.path().join("state"));
    base
}

/// Where each saved copy of the record starts in sled's log (sled 0.34 keeps
/// small values inline, one log message per save).
fn record_offsets(db: &[u8]) -> Vec<usize> {
    let needle = br#"{"license_id""#;
    db.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// The runbook "store lost → support unbinds → activate again online",
/// from an agent whose device key is gone.
async fn recover_through_support(plane: &Plane, id: &str, key: &str, agent: &Agent, seq: u64) {
    // A new device key for a license bound to another: the control plane
    // suspects a clone and answers 409, unsigned, which the agent may not
    // lock on and reports as a server it could not use.
    let refused = agent.activate(&plane.url, id, key).await;
    match &refused {
        Err(AgentError::Offline(why)) => assert!(why.contains("409 (clone_suspected)"), "{why}"),
        other => panic!("activation with a new device key: {other:?}"),
    }
    assert!(!agent.status().runs, "{:?}", agent.status());
    assert!(
        plane
            .audit_actions(id)
            .await
            .contains(&"license.clone_suspected".to_owned())
    );

    // Support unbinds; the next activation binds this box afresh.
    plane.act(id, "rebind", Some(json!({"unbind": true}))).await;
    let status = agent.activate(&plane.url, id, key).await.unwrap();
    assert!(matches!(status.state, State::Active { .. }), "{status:?}");
    assert!(status.runs);
    assert!(status.lease_seq.unwrap() > seq, "{status:?}");
    assert_eq!(status.license_id.as_deref(), Some(id));
    assert_eq!(plane.status_of(id).await, "active");
}

/// sled opens the store but the record is not there whole (here the log is cut
/// where the first record starts, so only the schema version survives): the
/// agent locks with `no_valid_lease`, and activating again overwrites the
/// record in place; the control plane then wants support to unbind.
#[tokio::test]
async fn a_rejected_record_locks_and_support_unbinding_recovers() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let p = pristine(&plane, &id, &key).await;
    let base = damaged_copy(&p, 0, |dir| {
        let db = std::fs::read(dir.join("db")).unwrap();
        let first = *record_offsets(&db).first().expect("a record in sled's log");
        std::fs::write(dir.join("db"), &db[..first]).unwrap();
    });
    let dir = base.path().join("state");
    plane.advance(3600);
    let (agent, clock) = agent(&plane, &dir, p.machine.clone());
    let no_valid_lease = State::Locked {
        reason: LockReason::NoValidLease,
    };
    let status = agent.check();
    assert_eq!(status.state, no_valid_lease, "{status:?}");
    assert!(!status.runs);
    assert_eq!(
        status.last_error.as_deref(),
        Some("the store is incomplete")
    );
    assert_eq!(
        agent.heartbeat_once().await,
        appliance::agent::Outcome::NotActivated
    );
    plane.advance(DAY);
    clock.advance(DAY);
    assert_eq!(agent.check().state, no_valid_lease);

    recover_through_support(&plane, &id, &key, &agent, p.seq).await;
    // The repaired store holds: a restart reads the new lease back.
    drop(agent);
    let (again, _) = e2e::agent(&plane, &dir, p.machine.clone());
    assert!(again.check().runs, "{:?}", again.status());
}

/// sled will not open the store at all (here `conf` is cut in half). The agent
/// locks with `no_valid_lease`; `activate` moves the damaged directory aside
/// (kept for support) and starts a fresh store, and the same runbook applies.
#[tokio::test]
async fn a_store_sled_cannot_open_is_set_aside_by_activation() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let p = pristine(&plane, &id, &key).await;
    let base = damaged_copy(&p, 1, |dir| {
        let conf = std::fs::read(dir.join("conf")).unwrap();
        std::fs::write(dir.join("conf"), &conf[..conf.len() / 2]).unwrap();
    });
    let dir = base.path().join("state");
    plane.advance(3600);
    let (agent, _clock) = agent(&plane, &dir, p.machine.clone());
    let status = agent.check();
    assert_eq!(
        status.state,
        State::Locked {
            reason: LockReason::NoValidLease
        },
        "{status:?}"
    );
    assert!(!status.runs);
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot be opened")),
        "{status:?}"
    );
    assert_eq!(
        agent.heartbeat_once().await,
        appliance::agent::Outcome::NotActivated
    );

    // Activating moves the unopenable directory aside and starts afresh; the
    // control plane then wants support to unbind the lost device key.
    recover_through_support(&plane, &id, &key, &agent, p.seq).await;
    let aside: Vec<_> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(base.path().join(&aside[0]).join("conf").exists());
}

/// With no store at all, the agent cannot tell it was ever activated: it is
/// unlicensed and does not run. The control plane can tell: the license is
/// still bound to the lost device key, so activating again takes support.
#[tokio::test]
async fn a_deleted_store_is_unlicensed_and_never_runs() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let p = pristine(&plane, &id, &key).await;
    let base = damaged_copy(&p, 1, |dir| std::fs::remove_dir_all(dir).unwrap());
    let dir = base.path().join("state");
    let (agent, clock) = open_at(&p, &dir, p.closed_at.plus(60));
    for step in [0, DAY, p.exp.secs() - p.closed_at.secs()] {
        clock.advance(step);
        let status = agent.check();
        assert_eq!(status.state, State::Unlicensed, "{status:?}");
        assert!(!status.runs);
        assert_eq!(status.license_id, None);
        assert_eq!(status.lease_expires_at, None);
        assert_eq!(agent.status(), status);
    }
    assert_eq!(
        agent.heartbeat_once().await,
        appliance::agent::Outcome::NotActivated
    );
    drop(agent);

    let (agent, _clock) = e2e::agent(&plane, &dir, p.machine.clone());
    recover_through_support(&plane, &id, &key, &agent, p.seq).await;
}

/// Damage in the middle of sled's log makes sled drop everything after it:
/// the store silently rolls back to an older record. The agent then runs on
/// that record's older lease, never past its end; and since the older record
/// also holds an older request counter, the control plane takes the box for a
/// clone and renews nothing.
#[tokio::test]
async fn a_store_rolled_back_by_damage_runs_only_on_its_older_lease() {
    let plane = Plane::start().await;
    let (id, key) = plane.issue("acme").await;
    let p = pristine(&plane, &id, &key).await;
    // Saves: activation (counter 1), its lease (seq 1), heartbeat (counter 2),
    // its lease (seq 2), heartbeat (counter 3), its lease (seq 3), a clock check.
    // Cutting the log at the fourth leaves counter 2 with the lease of seq 1.
    let base = damaged_copy(&p, 0, |dir| {
        let db = std::fs::read(dir.join("db")).unwrap();
        let offsets = record_offsets(&db);
        assert_eq!(offsets.len(), 7, "one record per save");
        std::fs::write(dir.join("db"), &db[..offsets[3]]).unwrap();
    });
    let dir = base.path().join("state");
    let (agent, clock) = agent(&plane, &dir, p.machine.clone());
    let status = agent.check();
    assert_eq!(status.lease_seq, Some(1), "{status:?}");
    let older = status.lease_expires_at.unwrap();
    assert!(older < p.exp, "{status:?}");
    assert!(status.runs, "{status:?}");

    // Online, the request counter has gone backwards: 409 clone_suspected,
    // unsigned, so the lease runs on offline (DESIGN.md "Denials").
    plane.advance(60);
    clock.advance(60);
    let outcome = agent.heartbeat_once().await;
    assert!(
        matches!(&outcome, appliance::agent::Outcome::Offline(why) if why.contains("409")),
        "{outcome:?}"
    );
    assert!(
        plane
            .audit_actions(&id)
            .await
            .contains(&"license.clone_suspected".to_owned())
    );
    assert_eq!(agent.status().lease_expires_at, Some(older));

    // It runs until the older lease ends, not a second longer.
    clock.advance(older.secs() - agent.status().now.secs() - 1);
    assert!(agent.check().runs, "{:?}", agent.status());
    clock.advance(1);
    let status = agent.check();
    assert!(!status.runs, "{status:?}");
    assert!(status.now < p.exp);
    assert_eq!(
        status.state,
        State::Locked {
            reason: LockReason::Expired
        }
    );
}

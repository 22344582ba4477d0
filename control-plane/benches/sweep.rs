//! The health sweep over 1,000,000 licenses (issue 8, "performance at fleet
//! scale"): [`ControlPlane::sweep`] against a raw scan of the same sled tree.
//!
//! A sweep takes seconds, so this is a plain binary (`harness = false`, no
//! criterion) that prints the median of a few runs of each measurement:
//!
//! 1. Fill a sled store in a temp dir with `SWEEP_LICENSES` licenses (default
//!    1,000,000) through [`Store::commit`] in batches, no HTTP and no sealing (one
//!    real sealed key string is reused; `support/fill.rs`, which the `populate`
//!    example shares): 93 % active and bound, 3 % never
//!    activated, 1 % in grace with time left, 1 % expired, 1 % suspended, and the
//!    due ones, 0.5 % in grace past its deadline and 0.5 % active with the
//!    subscription ended.
//! 2. `SWEEP_RUNS` times (default 3): a first sweep, which must expire and
//!    suspend exactly the due licenses, then a second sweep at the same time,
//!    which must change nothing and write nothing (the audit chain's head must
//!    not move). Before each repeat of the first sweep, the due licenses are put
//!    back in their due state.
//! 3. Close the store and open its sled database directly, with the store's
//!    settings. The floor: iterate every key and value of the `licenses` tree
//!    and decode nothing. For information: the same scan decoding every record
//!    into a `License` (serde_json), and decoding only the fields the sweep
//!    reads.
//!
//! Without `--bench` (`cargo test --benches`) it runs 2,000 licenses once.
//!
//! It allocates with mimalloc, as the `control-plane` binary does.
//!
//! The target: the second sweep ≤ 3 × the raw scan. `docs/BENCHMARKS.md`
//! records the results and the command. The store is deleted at the end; set
//! `SWEEP_DIR` to put it somewhere else than the system temp dir.

// A failed `expect` here is broken set-up, and stopping the benchmark with its
// message is right (clippy's test allowances do not cover benches). The results
// go to stdout: printing them is the point.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "support/fill.rs"]
mod fill;

use control_plane::clock::ManualClock;
use control_plane::domain::license::{License, Status};
use control_plane::secrets::Kek;
use control_plane::service::{Actor, ControlPlane, SweepReport};
use control_plane::store::sled_store::SledStore;
use control_plane::store::{Change, LicenseWrite, Store as _};
use fill::{BATCH, Due, Template};
use keys::UnixTime;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocator of the `control-plane` binary (src/main.rs), so that the
/// benchmark measures what the server runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: UnixTime = UnixTime(1_800_000_000);

/// The median of some durations.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    let n = times.len();
    if !n.is_multiple_of(2) {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2
    }
}

fn show(times: &[Duration]) -> String {
    let list: Vec<String> = times
        .iter()
        .map(|t| format!("{:.3}", t.as_secs_f64()))
        .collect();
    format!(
        "median {:.3} s (runs: {} s)",
        median(times.to_vec()).as_secs_f64(),
        list.join(", ")
    )
}

/// The fields of a stored license the sweep's decision reads, and nothing else.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct SweepView<'a> {
    id: &'a str,
    status: Status,
    until: Option<UnixTime>,
    subscription_ends_at: Option<UnixTime>,
    binding: BindingView,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct BindingView {
    device_key: Option<serde::de::IgnoredAny>,
    bound_at: Option<UnixTime>,
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and gets
    // a quick run that only checks the benchmark still works.
    let benching = std::env::args().any(|a| a == "--bench");
    let count: u64 = std::env::var("SWEEP_LICENSES")
        .map_or(if benching { 1_000_000 } else { 2_000 }, |v| {
            v.parse().unwrap()
        });
    let runs: usize =
        std::env::var("SWEEP_RUNS").map_or(if benching { 3 } else { 1 }, |v| v.parse().unwrap());
    let dir = match std::env::var_os("SWEEP_DIR") {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let path = dir.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "sweep benchmark: {count} licenses, {runs} runs, store in {}",
        path.display()
    );

    // 1. Fill.
    let store = Arc::new(rt.block_on(async { SledStore::open(&path).unwrap() }));
    let clock = Arc::new(ManualClock::new(NOW));
    let kek = Kek::generate().unwrap();
    let init = rt
        .block_on(ControlPlane::initialize(
            store.as_ref(),
            clock.as_ref(),
            &kek,
            "admin",
        ))
        .unwrap();
    let template = Template::new(&kek, init.signing_kid.clone()).unwrap();
    let cp = rt
        .block_on(ControlPlane::open(
            store.clone(),
            clock,
            kek,
            "bench".into(),
        ))
        .unwrap();
    let started = Instant::now();
    let fill::Filled { due, bytes } = rt
        .block_on(fill::fill(store.as_ref(), &template, count, NOW))
        .unwrap();
    let expire = due.iter().filter(|(_, d)| *d == Due::Expire).count() as u64;
    let suspend = due.iter().filter(|(_, d)| *d == Due::Suspend).count() as u64;
    println!(
        "fill: {count} licenses ({bytes} bytes of JSON for an active one, {} bytes a decoded License) in {:.1} s; due: {expire} to expire, {suspend} to suspend",
        std::mem::size_of::<License>(),
        started.elapsed().as_secs_f64()
    );

    // 2. Sweeps.
    let actor = Actor::system();
    let mut first = Vec::new();
    let mut second = Vec::new();
    let mut count_scan = Vec::new();
    for run in 0..runs {
        if run > 0 {
            // Put the due licenses back as they were, as of their current version.
            for chunk in due.chunks(BATCH) {
                let writes = chunk
                    .iter()
                    .map(|(original, _)| {
                        let current = rt.block_on(store.license(&original.id)).unwrap().unwrap();
                        let mut license = original.clone();
                        license.version = current.version + 1;
                        LicenseWrite {
                            license,
                            expected_version: Some(current.version),
                        }
                    })
                    .collect();
                let change = Change {
                    licenses: writes,
                    ..Change::default()
                };
                rt.block_on(store.commit(change, NOW)).unwrap();
            }
        }
        let started = Instant::now();
        let report = rt.block_on(cp.sweep(&actor)).unwrap();
        first.push(started.elapsed());
        assert_eq!(
            report,
            SweepReport {
                examined: count,
                expired: expire,
                suspended: suspend,
            }
        );

        let head = rt.block_on(store.audit_head()).unwrap();
        let started = Instant::now();
        let report = rt.block_on(cp.sweep(&actor)).unwrap();
        second.push(started.elapsed());
        assert_eq!(
            report,
            SweepReport {
                examined: count,
                expired: 0,
                suspended: 0,
            },
            "the second sweep changed something"
        );
        assert_eq!(
            rt.block_on(store.audit_head()).unwrap(),
            head,
            "the second sweep wrote to the audit log"
        );

        let started = Instant::now();
        let counts = rt.block_on(store.count_by_state()).unwrap();
        count_scan.push(started.elapsed());
        assert_eq!(counts.values().sum::<u64>(), count);
        println!(
            "run {}: first sweep {:.3} s, second sweep {:.3} s (wrote nothing), count_by_state {:.3} s",
            run + 1,
            first[run].as_secs_f64(),
            second[run].as_secs_f64(),
            count_scan[run].as_secs_f64()
        );
    }

    // 3. The floor, on the same tree, after closing the store.
    store.flush().unwrap();
    drop(cp);
    drop(store);
    let db = sled::Config::new()
        .path(&path)
        .cache_capacity(128 * 1024 * 1024)
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap();
    let tree = db.open_tree("licenses").unwrap();
    let raw_scan = || {
        let started = Instant::now();
        let mut n = 0u64;
        let mut total = 0usize;
        for entry in tree.iter() {
            let (key, value) = entry.unwrap();
            total += key.len() + value.len();
            n += 1;
        }
        black_box(total);
        assert_eq!(n, count);
        started.elapsed()
    };
    let decode_scan = || {
        let started = Instant::now();
        let mut n = 0u64;
        for entry in tree.iter() {
            let (_, value) = entry.unwrap();
            let license: License = serde_json::from_slice(&value).unwrap();
            black_box(&license);
            n += 1;
        }
        assert_eq!(n, count);
        started.elapsed()
    };
    let view_scan = || {
        let started = Instant::now();
        let mut n = 0u64;
        for entry in tree.iter() {
            let (_, value) = entry.unwrap();
            let view: SweepView = serde_json::from_slice(&value).unwrap();
            black_box(&view);
            n += 1;
        }
        assert_eq!(n, count);
        started.elapsed()
    };
    // Warm the cache as the sweeps had it warm.
    raw_scan();
    let mut raw = Vec::new();
    let mut decoded = Vec::new();
    let mut viewed = Vec::new();
    for _ in 0..runs {
        raw.push(raw_scan());
        decoded.push(decode_scan());
        viewed.push(view_scan());
    }
    drop(tree);
    drop(db);

    let ratio = |times: &[Duration]| {
        median(times.to_vec()).as_secs_f64() / median(raw.clone()).as_secs_f64()
    };
    println!();
    println!(
        "first sweep ({expire} expired, {suspend} suspended): {}",
        show(&first)
    );
    println!("second sweep (no change, no write):  {}", show(&second));
    println!("count_by_state (store, decodes all): {}", show(&count_scan));
    println!("floor: raw scan, no decoding:        {}", show(&raw));
    println!("scan decoding every License:         {}", show(&decoded));
    println!("scan decoding the sweep's fields:    {}", show(&viewed));
    println!();
    println!("ratios to the raw scan (medians):");
    println!("  first sweep           {:.2}", ratio(&first));
    println!(
        "  second sweep          {:.2}  (target <= 3)",
        ratio(&second)
    );
    println!("  count_by_state        {:.2}", ratio(&count_scan));
    println!("  decode every License  {:.2}", ratio(&decoded));
    println!("  decode sweep fields   {:.2}", ratio(&viewed));
    // The first sweep reads as much as the second: the rest is its writes.
    println!(
        "first sweep minus second, per transition: {:.3} ms",
        (median(first.clone()).as_secs_f64() - median(second.clone()).as_secs_f64()) * 1000.0
            / (expire + suspend) as f64
    );
    drop(dir);
}

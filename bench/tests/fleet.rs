//! `fleet run` end to end, briefly: the debug `control-plane` binary spawned on
//! a temporary data directory and a loopback port, a handful of licenses, about
//! a second per phase. Every heartbeat must get a lease, some verified, and
//! every activation, revoke and reinstate sent beside them must be acknowledged.
//!
//! Then the regression guard of issue 8: a run of a few seconds whose heartbeat
//! throughput, as a ratio to the sign floor of the same run, must be at least
//! half of the figure recorded for this configuration and these debug builds.

// The helper outside `#[test]` may fail loudly too: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::panic)]

use serde_json::Value;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The whole run may take this long (debug binaries, a shared machine).
const DEADLINE: Duration = Duration::from_secs(180);

/// `target/debug/control-plane`, next to this test's directory, built if missing
/// (as `tests/src/procs.rs` `bin()` does; `scripts/test` builds it first).
fn control_plane() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("control-plane");
    if !path.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let status = Command::new(&cargo)
            .args(["build", "--bins", "-p", "control-plane"])
            .current_dir(workspace)
            .status()
            .unwrap();
        assert!(status.success(), "building control-plane: {status}");
    }
    path
}

/// The regression guard's configuration: flat out, no acknowledgement stream,
/// about 8 s in all with the debug binaries.
const GUARD_ARGS: [&str; 10] = [
    "--licenses",
    "32",
    "--concurrency",
    "8",
    "--duration",
    "2",
    "--warmup",
    "0.5",
    "--acks-per-sec",
    "0",
];

/// The heartbeat phase's `ratio_to_sign` with [`GUARD_ARGS`] and the debug
/// binaries: the median of 10 runs on the machine of docs/BENCHMARKS.md,
/// section "The regression guard", which says how it was measured and how
/// noisy it is. Measure it again the same way when the build or the
/// configuration changes.
const RECORDED_RATIO_TO_SIGN: f64 = 0.30;

/// One `fleet run` at a time: two in parallel would measure each other.
static ONE_RUN: Mutex<()> = Mutex::new(());

/// `fleet run --spawn <debug control-plane> ARGS --json`, its report parsed.
fn fleet_run(args: &[&str]) -> Value {
    let _alone = ONE_RUN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .arg("run")
        .arg("--spawn")
        .arg(control_plane())
        .arg("--floor")
        .arg(env!("CARGO_BIN_EXE_fleet-floor"))
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("fleet run took more than {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "fleet run: {status}\n{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn a_short_run_gets_a_lease_for_every_heartbeat() {
    let report = fleet_run(&[
        "--licenses",
        "6",
        "--concurrency",
        "3",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--verify-every",
        "5",
        "--acks-per-sec",
        "20",
    ]);
    assert_eq!(report["issue"]["count"], 6, "{report}");
    assert_eq!(report["activate"]["count"], 6, "{report}");
    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["floor: bare", "floor: sign", "control plane: heartbeat"]
    );
    for phase in phases {
        assert_eq!(phase["errors"], serde_json::json!({}), "{phase}");
        assert!(phase["ok"].as_u64().unwrap() > 0, "{phase}");
        assert_eq!(phase["ok"], phase["requests"], "{phase}");
        assert!(phase["server_cpu_cores"].as_f64().is_some(), "{phase}");
        assert!(
            phase["server_peak_rss_mib"].as_f64().unwrap() > 0.0,
            "{phase}"
        );
    }
    let heartbeat = &phases[2];
    assert!(
        heartbeat["leases_verified"].as_u64().unwrap() > 0,
        "{heartbeat}"
    );
    assert!(
        heartbeat["ratio_to_sign"].as_f64().unwrap() > 0.0,
        "{heartbeat}"
    );
    assert!(
        heartbeat["ratio_to_bare"].as_f64().unwrap() > 0.0,
        "{heartbeat}"
    );
    let acks = &report["acks"];
    assert_eq!(acks["rate_per_sec"], 20.0, "{acks}");
    let rows = acks["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ack: activation", "ack: revoke", "ack: reinstate"]);
    for row in rows {
        assert_eq!(row["errors"], serde_json::json!({}), "{row}");
        assert!(row["requests"].as_u64().unwrap() > 0, "{row}");
        assert_eq!(row["ok"], row["requests"], "{row}");
        for p in ["p50_ms", "p99_ms", "p999_ms", "max_ms"] {
            assert!(row["latency"][p].as_f64().unwrap() > 0.0, "{row}");
        }
    }
}

#[test]
fn heartbeat_throughput_is_at_least_half_the_recorded_ratio_to_the_sign_floor() {
    let report = fleet_run(&GUARD_ARGS);
    let phases = report["phases"].as_array().unwrap();
    for phase in phases {
        assert_eq!(phase["errors"], serde_json::json!({}), "{phase}");
    }
    let heartbeat = phases
        .iter()
        .find(|p| p["name"] == "control plane: heartbeat")
        .unwrap();
    let measured = heartbeat["ratio_to_sign"].as_f64().unwrap();
    assert!(
        measured >= RECORDED_RATIO_TO_SIGN / 2.0,
        "heartbeat throughput regressed: {measured:.3} x the sign floor, below half of the \
         recorded {RECORDED_RATIO_TO_SIGN:.3} (recorded in bench/tests/fleet.rs \
         RECORDED_RATIO_TO_SIGN, measured as docs/BENCHMARKS.md \"The regression guard\" \
         says); the phases: {}",
        serde_json::Value::Array(phases.clone())
    );
}

//! `fleet`: a fleet simulator for the control plane (issue 8).
//!
//! `fleet run` issues N licenses through the real API, activates one simulated
//! appliance per license (a real ed25519 device key, fingerprint components, a
//! strictly increasing counter), then measures three phases with the same client
//! loop, concurrency and duration: the two floors served by `fleet-floor` (a
//! separate process, like the control plane: `POST /bare` and `POST /sign`),
//! then the control plane's heartbeats. Each phase is reported with its ratio to
//! both floors, which holds on a noisy machine where absolute numbers do not
//! (docs/BENCHMARKS.md). During the heartbeat phase a low-rate stream of
//! activations, revokes and reinstates runs beside it (`acks`), each kind's
//! latency reported on its own row.
//!
//! Every HTTP call has a timeout, and the servers it starts are stopped on every
//! way out, Ctrl-C included (`procs::Server` is a guard).

#![forbid(unsafe_code)]

mod acks;
mod report;

use bench::{fleet, load, procs};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{ArgGroup, Parser, Subcommand};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "fleet",
    version,
    about = "Load on a licensing control plane, with floors measured in the same run"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Provision a fleet, then measure the floors and the control plane's heartbeats
    Run(RunArgs),
}

#[derive(clap::Args)]
#[command(group(ArgGroup::new("plane").required(true).args(["server", "spawn"])))]
struct RunArgs {
    /// A running control plane's base URL (http://host:port)
    #[arg(long, requires = "token")]
    server: Option<String>,
    /// With --server: an admin (onboarding, support or super_admin) API token
    #[arg(long, requires = "server")]
    token: Option<String>,
    /// With --server: the server's PID, to report its CPU and memory
    #[arg(long, requires = "server")]
    server_pid: Option<u32>,
    /// Start this `control-plane` binary on a fresh temporary data directory
    #[arg(long)]
    spawn: Option<PathBuf>,
    /// With --spawn: the store to initialize and serve from instead of a
    /// temporary sled directory, an empty PostgreSQL database (`postgres://...`)
    #[arg(long, requires = "spawn")]
    store: Option<String>,
    /// With --spawn and a PostgreSQL --store: replicas sharing it; each
    /// appliance's heartbeats go to each replica in turn
    #[arg(long, default_value_t = 1, requires = "store")]
    replicas: usize,
    /// The `fleet-floor` binary [default: beside this one]
    #[arg(long)]
    floor: Option<PathBuf>,
    /// Licenses to issue, one appliance each
    #[arg(long)]
    licenses: usize,
    /// Concurrent requests: tasks and keep-alive connections (at most one per license)
    #[arg(long)]
    concurrency: usize,
    /// Seconds measured per phase
    #[arg(long)]
    duration: f64,
    /// Seconds of unmeasured load before each phase's window
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Requests per second (open loop) instead of flat out
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds allowed for one request, answer included
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Activations, revokes and reinstates per second (together, in turn) sent
    /// beside the heartbeats, each kind's latency measured; 0 sends none
    #[arg(long, default_value_t = 20.0)]
    acks_per_sec: f64,
    /// Verify one heartbeat lease in this many with `keys`
    #[arg(long, default_value_t = 1000)]
    verify_every: u64,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fleet: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Cmd::Run(args) = cli.command;
    let json = args.json;
    // Dropping `run` (on a signal) drops its server guards, which stop the servers.
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(args) => r,
            r = stop_signal() => Err(r.unwrap_or_else(|e| e)),
        }
    });
    match result {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("fleet: encoding the report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report.human());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fleet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves with the error to report on SIGINT or SIGTERM.
async fn stop_signal() -> Result<anyhow::Error, anyhow::Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => Ok(anyhow!("stopped by SIGTERM")),
        _ = interrupt.recv() => Ok(anyhow!("interrupted")),
    }
}

fn secs(s: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| anyhow!("--{what} must be a number of seconds, 0 or more"))
}

async fn run(args: RunArgs) -> Result<report::Report> {
    if args.licenses == 0 || args.concurrency == 0 {
        bail!("--licenses and --concurrency must be at least 1");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be more than 0");
    }
    if !(args.acks_per_sec >= 0.0 && args.acks_per_sec.is_finite()) {
        bail!("--acks-per-sec must be 0 or more");
    }
    let config = load::Config {
        concurrency: args.concurrency,
        warmup: secs(args.warmup, "warmup")?,
        duration: secs(args.duration, "duration")?,
        rate: args.rate,
        timeout: secs(args.timeout, "timeout")?,
        verify_every: args.verify_every,
    };
    // Declared first so it is removed last, after the servers using it stopped.
    let dir = tempfile::Builder::new()
        .prefix("fleet-")
        .tempdir()
        .context("creating a temporary directory")?;
    let ticks_per_sec = procs::ticks_per_sec();
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(args.concurrency)
        .connect_timeout(Duration::from_secs(5))
        .timeout(config.timeout)
        .build()
        .context("building the HTTP client")?;

    let (plane, bases, token) = match (&args.spawn, &args.server, &args.token) {
        (Some(bin), _, _) => {
            let (servers, token) =
                spawn_control_plane(bin, dir.path(), args.store.as_deref(), args.replicas)?;
            let bases = servers.iter().map(procs::Server::url).collect();
            (servers, bases, token)
        }
        (None, Some(url), Some(token)) => (
            Vec::new(),
            vec![url.trim_end_matches('/').to_owned()],
            token.clone(),
        ),
        _ => bail!("give --spawn, or --server with --token"),
    };
    let plane_pids: Vec<u32> = if plane.is_empty() {
        args.server_pid.into_iter().collect()
    } else {
        plane.iter().map(procs::Server::pid).collect()
    };
    // Provisioning and the acknowledgement stream go to the first replica.
    let base = bases.first().cloned().unwrap_or_default();

    let trust = fetch_trust(&client, &base).await?;
    let (licenses, issue) = fleet::issue(&client, &base, &token, args.licenses, args.concurrency)
        .await
        .context("issuing licenses")?;
    let (devices, activate) = fleet::activate(&client, &base, licenses, args.concurrency)
        .await
        .context("activating devices")?;
    let ack_config = (args.acks_per_sec > 0.0).then_some(acks::Config {
        rate: args.acks_per_sec,
        warmup: config.warmup,
        duration: config.duration,
    });
    let ack_pools = match ack_config {
        Some(ack) => Some(
            ack_pools(
                &client,
                &base,
                &token,
                ack.per_kind(),
                args.licenses,
                args.concurrency,
            )
            .await?,
        ),
        None => None,
    };

    let floor_bin = match &args.floor {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("finding this executable")?
            .with_file_name("fleet-floor"),
    };
    let mut floor = procs::Server::spawn(
        "fleet-floor",
        Command::new(&floor_bin),
        &dir.path().join("floor.log"),
    )?;
    let floor_probe = load::Probe {
        server_pids: vec![floor.pid()],
        ticks_per_sec,
    };
    let floor_bases = [floor.url()];
    let mut outcomes = Vec::new();
    let mut devices = devices;
    for target in [load::Target::Bare, load::Target::Sign] {
        let (outcome, back) = load::run(
            &client,
            &floor_bases,
            target,
            devices,
            config,
            None,
            floor_probe.clone(),
        )
        .await?;
        devices = back;
        outcomes.push(outcome);
    }
    floor.stop();
    let heartbeats = load::run(
        &client,
        &bases,
        load::Target::Heartbeat,
        devices,
        config,
        Some(load::LeaseCheck { trust }),
        load::Probe {
            server_pids: plane_pids,
            ticks_per_sec,
        },
    );
    let stream = async {
        match (ack_config, ack_pools) {
            (Some(ack), Some(pools)) => acks::run(&client, &base, &token, pools, ack)
                .await
                .map(Some),
            _ => Ok(None),
        }
    };
    // Both start now, so the stream's window is the heartbeat phase's.
    let (heartbeats, stream) = tokio::join!(heartbeats, stream);
    let (outcome, _) = heartbeats?;
    outcomes.push(outcome);
    let ack_outcomes = stream.context("measuring acknowledgements")?;
    drop(plane);

    Ok(report::Report {
        store: match (&args.store, &args.spawn) {
            (Some(_), _) => "postgres",
            (None, Some(_)) => "sled",
            (None, None) => "the given server's",
        },
        replicas: bases.len(),
        licenses: args.licenses,
        concurrency: args.concurrency,
        warmup_secs: args.warmup,
        duration_secs: args.duration,
        rate: args.rate,
        issue,
        activate,
        phases: report::phases(&outcomes),
        acks: ack_outcomes.map(|o| report::acks(args.acks_per_sec, &o)),
    })
}

/// Issues the licenses of the acknowledgement stream, `per_kind` for each
/// pool, none of them in the fleet: devices (not activated) for the
/// activations, and license ids for the revokes.
async fn ack_pools(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    per_kind: usize,
    fleet_size: usize,
    concurrency: usize,
) -> Result<acks::Pools> {
    let (mut issued, _) = fleet::issue(client, base, token, 2 * per_kind, concurrency)
        .await
        .context("issuing the acknowledgement stream's licenses")?;
    let revoke = issued
        .split_off(per_kind)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut activate = Vec::with_capacity(per_kind);
    for (i, (id, key)) in issued.into_iter().enumerate() {
        // Numbered after the fleet, so no two devices share fingerprint components.
        activate.push(fleet::Device::new(fleet_size + i, id, key)?);
    }
    Ok(acks::Pools { activate, revoke })
}

/// `control-plane init` on a fresh data directory (or on `store`, an empty
/// PostgreSQL database), then `replicas` × `serve` on loopback ports with every
/// rate limit off (they would measure the limiter, not the server). Returns
/// the running servers and the admin token.
fn spawn_control_plane(
    bin: &std::path::Path,
    dir: &std::path::Path,
    store: Option<&str>,
    replicas: usize,
) -> Result<(Vec<procs::Server>, String)> {
    if replicas == 0 || (replicas > 1 && store.is_none()) {
        bail!("--replicas: 1, or more with a PostgreSQL --store");
    }
    let data = dir.join("data");
    let kek = dir.join("kek");
    let store_args = |command: &mut Command| {
        match store {
            Some(url) => command.arg("--store").arg(url),
            None => command.arg("--data-dir").arg(&data),
        };
        command.arg("--kek-file").arg(&kek);
    };
    let mut init = Command::new(bin);
    init.arg("init");
    store_args(&mut init);
    init.arg("--json");
    let out = procs::run_to_end("control-plane init", init, Duration::from_secs(120))?;
    let value: serde_json::Value =
        serde_json::from_str(out.trim()).context("parsing `control-plane init --json`")?;
    let token = value["admin_token"]
        .as_str()
        .ok_or_else(|| anyhow!("`control-plane init --json` printed no admin_token"))?
        .to_owned();
    let mut servers = Vec::with_capacity(replicas);
    for replica in 0..replicas {
        let mut serve = Command::new(bin);
        serve.arg("serve");
        store_args(&mut serve);
        serve
            .args(["--listen", "127.0.0.1:0"])
            .args(["--heartbeats-per-minute", "0"])
            .args(["--activations-per-minute", "0"])
            .args(["--auth-failures-per-minute", "0"]);
        servers.push(procs::Server::spawn(
            "control-plane serve",
            serve,
            &dir.join(format!("control-plane-{replica}.log")),
        )?);
    }
    Ok((servers, token))
}

/// The control plane's trust file, to verify sampled leases against.
async fn fetch_trust(client: &reqwest::Client, base: &str) -> Result<keys::TrustStore> {
    let url = format!("{base}/.well-known/licensing-trust.json");
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {text}");
    }
    keys::TrustStore::from_json(&text).with_context(|| format!("parsing {url}"))
}

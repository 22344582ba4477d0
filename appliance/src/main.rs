//! `appliance`: the licensing agent's command line.
//!
//! Exit codes: 0 success (or, for `check` and `run`, licensed), 1 locked or not
//! activated, 2 bad usage, 3 any other failure. There is deliberately no option
//! that sets or fakes the time.

#![forbid(unsafe_code)]

use anyhow::{Context as _, Result, anyhow, bail};
use appliance::agent::{Agent, AgentConfig, AgentError, Status};
use appliance::clock::SystemClock;
use appliance::eval::Policy;
use appliance::fingerprint;
use appliance::run::{self, Exit};
use appliance::transport::{HttpTransport, NoNetwork, Transport};
use clap::{Args, Parser, Subcommand};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "appliance", version, about = "The appliance's licensing agent")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// The local state directory
    #[arg(
        long,
        global = true,
        env = "APPLIANCE_DATA_DIR",
        default_value = "/var/lib/appliance-license"
    )]
    data_dir: PathBuf,
    /// The vendor's trust file (pinned root keys)
    #[arg(
        long,
        global = true,
        env = "APPLIANCE_TRUST_FILE",
        default_value = "/etc/appliance-license/trust.json"
    )]
    trust: PathBuf,
    /// A CA certificate (PEM) to trust instead of the system's, for HTTPS to the license server
    #[arg(long, global = true, env = "APPLIANCE_CA_FILE")]
    ca: Option<PathBuf>,
    /// The status socket of `run` [default: <data-dir>/status.sock]
    #[arg(long, global = true, env = "APPLIANCE_STATUS_SOCKET")]
    status_socket: Option<PathBuf>,
    /// Log as JSON lines
    #[arg(long, global = true, env = "APPLIANCE_LOG_JSON")]
    log_json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Print this box's fingerprint components (hashed), to compare two boxes
    Fingerprint {
        /// The license id that salts the hashes [default: the activated license]
        #[arg(long)]
        license_id: Option<String>,
    },
    /// Activate online: bind this box to a license
    Activate(ActivateArgs),
    /// Air-gapped activation, step 1: write a signed request for the license server's operator
    ActivationRequest(LicenseArgs),
    /// Air-gapped activation, step 2: install the operator's response (from standard input or a file)
    ActivationResponse {
        /// The response file, or `-` for standard input
        #[arg(default_value = "-")]
        file: String,
    },
    /// Heartbeat and enforce; exits non-zero when locked, or supervises CMD
    Run {
        /// The licensed service to supervise: started while licensed, sent SIGTERM when locked
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Print the state, dates and banner
    Status {
        /// As JSON
        #[arg(long)]
        json: bool,
    },
    /// Answer by exit code only: 0 licensed, 1 not
    Check,
}

#[derive(Args)]
struct LicenseArgs {
    /// The license id
    #[arg(long, env = "APPLIANCE_LICENSE_ID")]
    license_id: String,
    /// A file holding the license key (pk_...) [default: APPLIANCE_LICENSE_KEY]
    #[arg(long, env = "APPLIANCE_LICENSE_KEY_FILE")]
    key_file: Option<PathBuf>,
}

#[derive(Args)]
struct ActivateArgs {
    /// The license server's URL
    #[arg(long, env = "APPLIANCE_SERVER")]
    server: String,
    #[command(flatten)]
    license: LicenseArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.common.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("appliance: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("appliance: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("APPLIANCE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn read_trust(path: &Path) -> Result<keys::TrustStore> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the trust file {}", path.display()))?;
    keys::TrustStore::from_json(&text).with_context(|| format!("the trust file {}", path.display()))
}

fn open_agent(common: &Common) -> Result<Arc<Agent>> {
    let ca = match &common.ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    let transport = HttpTransport::new(ca.as_deref()).map_err(|e| anyhow!("{e}"))?;
    open_agent_with(common, Arc::new(transport))
}

/// [`open_agent`] with the given transport.
fn open_agent_with(common: &Common, transport: Arc<dyn Transport>) -> Result<Arc<Agent>> {
    let trust = read_trust(&common.trust)?;
    std::fs::create_dir_all(&common.data_dir)
        .with_context(|| format!("creating {}", common.data_dir.display()))?;
    let config = AgentConfig {
        data_dir: common.data_dir.clone(),
        trust,
        policy: Policy::default(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    Ok(Arc::new(Agent::open(
        config,
        transport,
        Arc::new(SystemClock::default()),
        fingerprint::collect_raw(),
    )))
}

/// How long `run` waits for a store another process holds.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The agent for `run`. `status` and `check` open the store for a moment when
/// no `run` answers on the socket; a `run` starting just then waits for them
/// instead of going on without its store (it would report "unlicensed" and
/// exit, or, supervising a child, never heartbeat). A store still held after
/// [`STORE_WAIT`] (another `run`) is an error.
async fn run_agent(common: &Common) -> Result<Arc<Agent>> {
    until_not_busy(|| open_agent(common), |agent| agent.busy(), STORE_WAIT).await
}

/// Calls `open` until `busy` says nothing holds what it opened, for at most
/// `limit`; then the last reason is the error.
async fn until_not_busy<T>(
    mut open: impl FnMut() -> Result<T>,
    busy: impl Fn(&T) -> Option<String>,
    limit: std::time::Duration,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let opened = open()?;
        match busy(&opened) {
            None => return Ok(opened),
            Some(why) if tokio::time::Instant::now() >= deadline => bail!("{why}"),
            Some(_) => {
                // Drop it before waiting, so this process holds nothing meanwhile.
                drop(opened);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// The agent, when no running service answered on the status socket: the
/// store must then be free, or the answer would be a guess.
fn idle_agent(common: &Common) -> Result<Arc<Agent>> {
    // `status` and `check` only read local state. An HTTPS client would load
    // the platform's CA certificates, about a quarter of an offline `check`.
    let agent = open_agent_with(common, Arc::new(NoNetwork))?;
    if let Some(busy) = agent.busy() {
        bail!("{busy} (its status socket did not answer)");
    }
    Ok(agent)
}

fn license_key(args: &LicenseArgs) -> Result<String> {
    let text = match &args.key_file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => std::env::var("APPLIANCE_LICENSE_KEY").map_err(|_| {
            anyhow!("no license key: give --key-file FILE or set APPLIANCE_LICENSE_KEY")
        })?,
    };
    Ok(text.trim().to_owned())
}

fn socket_path(common: &Common) -> PathBuf {
    common
        .status_socket
        .clone()
        .unwrap_or_else(|| common.data_dir.join("status.sock"))
}

fn print_status(status: &serde_json::Value, json: bool) {
    if json {
        println!("{status}");
        return;
    }
    let field = |name: &str| status.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let time = |name: &str| {
        status
            .get(name)
            .and_then(serde_json::Value::as_i64)
            .map(|t| appliance::eval::format_time(keys::UnixTime(t)))
    };
    let state = field("state").unwrap_or_default();
    match field("reason") {
        Some(reason) => println!("state: {state} ({reason})"),
        None => println!("state: {state}"),
    }
    if let Some(id) = field("license_id") {
        println!("license: {id}");
    }
    let grace = if state == "grace" { "until" } else { "" };
    for (label, name) in [
        ("lease expires", "lease_expires_at"),
        ("grace until", grace),
        ("offline since", "since"),
        ("service stops", "locks_at"),
        ("last heartbeat", "last_success"),
    ] {
        if let Some(t) = time(name) {
            println!("{label}: {t}");
        }
    }
    if let Some(error) = field("last_error") {
        println!("last error: {error}");
    }
    if let Some(banner) = field("banner") {
        println!("\n{banner}");
    }
}

fn exit_for(status: &Status) -> ExitCode {
    if status.runs {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let common = &cli.common;
    match cli.command {
        Command::Fingerprint { license_id } => {
            let raw = fingerprint::collect_raw();
            let license_id = match license_id {
                Some(id) => id,
                None => open_agent(common)?
                    .status()
                    .license_id
                    .ok_or_else(|| anyhow!("not activated: give --license-id"))?,
            };
            let components = fingerprint::hashed(&raw, &license_id);
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "license_id": license_id,
                    "components": components,
                    "digest": keys::proto::fingerprint_digest(&components),
                }))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Activate(args) => {
            let key = license_key(&args.license)?;
            let agent = open_agent(common)?;
            match agent
                .activate(&args.server, &args.license.license_id, &key)
                .await
            {
                Ok(status) => {
                    print_status(&serde_json::to_value(&status)?, false);
                    Ok(exit_for(&status))
                }
                Err(AgentError::Denied(reason)) => {
                    eprintln!(
                        "appliance: the license server refused activation: {}",
                        reason.as_str()
                    );
                    Ok(ExitCode::from(1))
                }
                Err(e) => bail!(e),
            }
        }
        Command::ActivationRequest(args) => {
            let key = license_key(&args)?;
            let agent = open_agent(common)?;
            let request = agent.activation_request(&args.license_id, &key)?;
            println!("{}", serde_json::to_string_pretty(&request)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::ActivationResponse { file } => {
            let mut body = Vec::new();
            if file == "-" {
                std::io::stdin().take(64 * 1024).read_to_end(&mut body)?;
            } else {
                body = std::fs::read(&file).with_context(|| format!("reading {file}"))?;
            }
            let agent = open_agent(common)?;
            let status = agent.install_activation_response(&body)?;
            print_status(&serde_json::to_value(&status)?, false);
            Ok(exit_for(&status))
        }
        Command::Run { command } => {
            let agent = run_agent(common).await?;
            let child = (!command.is_empty()).then_some(command);
            match run::run(agent, child, Some(socket_path(common)), shutdown_signal()).await {
                Exit::Stopped => Ok(ExitCode::SUCCESS),
                Exit::Locked(status) => {
                    eprintln!(
                        "appliance: {} — {}",
                        status.state.name(),
                        status.banner.unwrap_or_default()
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Status { json } => {
            let value = match run::read_status_socket(&socket_path(common)).await {
                Some(value) => value,
                None => serde_json::to_value(idle_agent(common)?.status())?,
            };
            print_status(&value, json);
            let runs = value
                .get("runs")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            Ok(if runs {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Check => {
            let runs = match run::read_status_socket(&socket_path(common)).await {
                Some(value) => value
                    .get("runs")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false),
                None => idle_agent(common)?.check().runs,
            };
            Ok(if runs {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn run_waits_for_a_briefly_held_store_and_gives_up_on_a_held_one() {
        // Busy for the first three opens (a `status` holding the store), then free.
        let mut opens = 0;
        let opened = until_not_busy(
            || {
                opens += 1;
                Ok(opens)
            },
            |n| (*n <= 3).then(|| "held".to_owned()),
            STORE_WAIT,
        )
        .await;
        assert_eq!(opened.ok(), Some(4));

        // Held for good (another `run`): an error after the limit (a short
        // real one here: the timeout is what is tested), not a busy agent.
        let limit = Duration::from_millis(300);
        let started = tokio::time::Instant::now();
        let held = until_not_busy(|| Ok(()), |()| Some("held".to_owned()), limit).await;
        assert_eq!(held.err().map(|e| e.to_string()).as_deref(), Some("held"));
        assert!(started.elapsed() >= limit);

        // An open that fails is not retried.
        let failed = until_not_busy(
            || -> Result<()> { bail!("unreadable trust file") },
            |()| None,
            STORE_WAIT,
        )
        .await;
        assert!(failed.is_err());
    }
}

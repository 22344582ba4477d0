//! `control-plane`: the vendor's licensing server, its offline maintenance
//! commands (`init`, `serve`, `audit verify`, `migrate`), and the admin CLI that drives a
//! running server over HTTP(S) (`licenses`, `signing-keys`, `audit list`,
//! `users`, `settings`; the code is in `client/`).
//!
//! Exit codes (also in `--help` and docs/operations.md "Admin CLI"):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure (a local file, an unexpected answer) |
//! | 2 | bad usage (clap's), or an argument refused before sending (no token, unknown setting) |
//! | 3 | the server could not be reached, or answered 5xx |
//! | 4 | the audit chain is broken (`audit verify`) |
//! | 5 | authentication or permission refused (401, 403) |
//! | 6 | not found (404) |
//! | 7 | refused because of the state, or a conflict (409, 422, a signed denial) |
//! | 8 | any other 4xx (bad request, 413, 429...) |

#![forbid(unsafe_code)]

mod client;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use control_plane::clock::SystemClock;
use control_plane::config::{FileConfig, LogFormat, default_kek_file};
use control_plane::http::rate_limit::RateLimits;
use control_plane::http::tls::{Tls, TlsFiles};
use control_plane::secrets::Kek;
use control_plane::service::{ControlPlane, RootSetup};
use control_plane::store::{Store, StoreLocation};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc instead of glibc's malloc: a heartbeat or a sweep allocates many
/// small blocks and frees them together, which glibc coalesces on the hot path
/// (docs/BENCHMARKS.md, "What bounded it").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other failure
  2  bad usage, or an argument refused before sending (no token, unknown setting)
  3  the server could not be reached, or answered 5xx
  4  the audit chain is broken (audit verify)
  5  authentication or permission refused (401, 403)
  6  not found (404)
  7  refused because of the state, or a conflict (409, 422, a signed denial)
  8  any other 4xx (bad request, too large, too many requests...)

Client commands take --server URL (CONTROL_PLANE_SERVER, default http://127.0.0.1:8080)
and the API token from --token-file PATH (CONTROL_PLANE_TOKEN_FILE; preferred), the
CONTROL_PLANE_TOKEN variable, or --token (visible to other users in `ps`).";

#[derive(Parser)]
#[command(
    name = "control-plane",
    version,
    about = "The licensing control plane",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the store, a root key, a certified signing key and the first super_admin
    Init(InitArgs),
    /// Serve the API
    Serve(ServeArgs),
    /// The audit log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Licenses on a running control plane: list, issue, revoke, rebind...
    #[command(after_help = EXIT_CODES)]
    Licenses(client::LicensesArgs),
    /// Signing keys on a running control plane (super_admin)
    #[command(after_help = EXIT_CODES)]
    SigningKeys(client::SigningKeysArgs),
    /// Users on a running control plane (super_admin)
    #[command(after_help = EXIT_CODES)]
    Users(client::UsersArgs),
    /// The fleet-wide settings on a running control plane
    #[command(after_help = EXIT_CODES)]
    Settings(client::SettingsArgs),
    /// Copy a stopped installation's store into an empty PostgreSQL database, and verify the copy
    Migrate(MigrateArgs),
}

#[derive(Args)]
struct MigrateArgs {
    /// The store to copy: `sled:DIR` (its control plane stopped: sled locks its directory)
    #[arg(long)]
    from: String,
    /// The empty PostgreSQL database to copy into: `postgres://...`
    #[arg(long, value_parser = postgres_url)]
    to: String,
}

/// `migrate --to`'s parser: the copy goes into PostgreSQL only, and anything
/// else is a usage error (exit 2) before any store is opened.
fn postgres_url(text: &str) -> std::result::Result<String, String> {
    match StoreLocation::parse(text) {
        StoreLocation::Postgres(url) => Ok(url),
        StoreLocation::Sled(_) => {
            Err("not a postgres:// URL: migrate copies into PostgreSQL only".to_owned())
        }
    }
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit hash chain of a store (a sled data directory must be stopped)
    Verify(StoreArgs),
    /// Read the audit log of a running control plane
    #[command(after_help = EXIT_CODES)]
    List(client::AuditListArgs),
}

#[derive(Args)]
struct StoreArgs {
    /// The store: `postgres://...` or `sled:DIR`
    #[arg(
        long,
        env = "CONTROL_PLANE_STORE",
        conflicts_with = "data_dir",
        required_unless_present = "data_dir"
    )]
    store: Option<String>,
    /// The data directory of a sled store (the same as `--store sled:DIR`)
    #[arg(long, env = "CONTROL_PLANE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct CommonArgs {
    /// A TOML config file (flags and environment variables override it)
    #[arg(long, env = "CONTROL_PLANE_CONFIG")]
    config: Option<PathBuf>,
    /// The store: `postgres://...` for replicas on PostgreSQL, or `sled:DIR` [default: sled in --data-dir]
    #[arg(long, env = "CONTROL_PLANE_STORE", conflicts_with = "data_dir")]
    store: Option<String>,
    /// The data directory of the embedded sled store
    #[arg(long, env = "CONTROL_PLANE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The key-encryption key file [default: <data-dir>.kek, beside the data directory; required with PostgreSQL unless CONTROL_PLANE_KEK is set]
    #[arg(long, env = "CONTROL_PLANE_KEK_FILE")]
    kek_file: Option<PathBuf>,
    /// Log format
    #[arg(long, env = "CONTROL_PLANE_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Args)]
struct InitArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The first super_admin's name
    #[arg(long, default_value = "admin")]
    admin_name: String,
    /// Keep the root key offline: pin the roots of this trust file (`keys trust
    /// export`) instead of generating a root (docs/key-ceremony.md)
    #[arg(long, requires_all = ["signing_key", "signing_certificate"])]
    offline_root: Option<PathBuf>,
    /// With --offline-root: the first signing key, a sealed key file (`keys signing new`)
    #[arg(long, requires = "offline_root")]
    signing_key: Option<PathBuf>,
    /// With --offline-root: its certificate from an offline root (`keys certify`)
    #[arg(long, requires = "offline_root")]
    signing_certificate: Option<PathBuf>,
    /// The signing key file's passphrase, first line of this file [default: CONTROL_PLANE_SIGNING_PASSPHRASE]
    #[arg(long, requires = "offline_root")]
    signing_passphrase_file: Option<PathBuf>,
    /// Print the result as JSON (for scripts)
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to listen on [default: 127.0.0.1:8080]; port 0 picks a free port
    #[arg(long, env = "CONTROL_PLANE_LISTEN")]
    listen: Option<SocketAddr>,
    /// The `iss` of leases and denials [default: control-plane]
    #[arg(long, env = "CONTROL_PLANE_ISSUER")]
    issuer: Option<String>,
    /// Seconds between health sweeps; 0 disables them (the certificate renewal check runs every 6 h regardless) [default: 3600]
    #[arg(long, env = "CONTROL_PLANE_SWEEP_INTERVAL")]
    sweep_interval: Option<u64>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); reloaded on SIGHUP
    #[arg(long, env = "CONTROL_PLANE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, env = "CONTROL_PLANE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow plain HTTP on an address other than loopback (behind a TLS-terminating proxy)
    #[arg(long, env = "CONTROL_PLANE_ALLOW_PLAIN_HTTP", value_parser = clap::builder::BoolishValueParser::new())]
    allow_plain_http: bool,
    /// Activations per minute per client IP; 0 turns the limit off [default: 60]
    #[arg(long, env = "CONTROL_PLANE_ACTIVATIONS_PER_MINUTE")]
    activations_per_minute: Option<u32>,
    /// Failed authentications per minute per client IP before it is refused; 0 = off [default: 30]
    #[arg(long, env = "CONTROL_PLANE_AUTH_FAILURES_PER_MINUTE")]
    auth_failures_per_minute: Option<u32>,
    /// Heartbeats per minute per license; 0 turns the limit off [default: 20]
    #[arg(long, env = "CONTROL_PLANE_HEARTBEATS_PER_MINUTE")]
    heartbeats_per_minute: Option<u32>,
}

/// The settings after flags, environment and file are merged.
struct Resolved {
    store: StoreLocation,
    /// `None` with PostgreSQL and no file given: the KEK must come from
    /// CONTROL_PLANE_KEK (there is no data directory to sit beside).
    kek_file: Option<PathBuf>,
    file: FileConfig,
}

fn resolve(common: &CommonArgs) -> Result<Resolved> {
    let file = match &common.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let store = match (&common.store, &common.data_dir) {
        (Some(store), _) => StoreLocation::parse(store),
        (None, Some(dir)) => StoreLocation::Sled(dir.clone()),
        (None, None) => match (&file.store, &file.data_dir) {
            (Some(store), _) => StoreLocation::parse(store),
            (None, Some(dir)) => StoreLocation::Sled(dir.clone()),
            (None, None) => bail!(
                "no store: give --data-dir (CONTROL_PLANE_DATA_DIR, data_dir in the config file) \
                 or --store postgres://... (CONTROL_PLANE_STORE, store)"
            ),
        },
    };
    let kek_file = common
        .kek_file
        .clone()
        .or_else(|| file.kek_file.clone())
        .or_else(|| match &store {
            StoreLocation::Sled(dir) => Some(default_kek_file(dir)),
            StoreLocation::Postgres(_) => None,
        });
    init_logging(
        common
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Human),
    );
    Ok(Resolved {
        store,
        kek_file,
        file,
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONTROL_PLANE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Where the key-encryption key comes from: a KEK file named by `--kek-file` or
/// `CONTROL_PLANE_KEK_FILE` if given, else `CONTROL_PLANE_KEK` (base64url), else
/// the KEK file of the config file or the default path.
enum KekSource {
    Env(String),
    File(PathBuf),
}

fn kek_source(common: &CommonArgs, resolved: &Resolved) -> Result<KekSource> {
    if common.kek_file.is_none()
        && let Ok(text) = std::env::var("CONTROL_PLANE_KEK")
    {
        return Ok(KekSource::Env(text));
    }
    match &resolved.kek_file {
        Some(path) => Ok(KekSource::File(path.clone())),
        None => bail!(
            "no key-encryption key: with PostgreSQL give --kek-file (CONTROL_PLANE_KEK_FILE, kek_file) \
             or CONTROL_PLANE_KEK; every replica needs the same one"
        ),
    }
}

fn load_kek(source: &KekSource) -> Result<Kek> {
    match source {
        KekSource::Env(text) => Ok(Kek::from_b64(text).context("CONTROL_PLANE_KEK")?),
        KekSource::File(path) => Ok(Kek::read(path)?),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("control-plane: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("control-plane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Init(args) => init(args).await,
        Command::Serve(args) => serve(args).await,
        Command::Audit(AuditCommand::Verify(args)) => audit_verify(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Audit(AuditCommand::List(args)) => Ok(client::audit_list(args).await),
        Command::Licenses(args) => Ok(client::licenses(args).await),
        Command::SigningKeys(args) => Ok(client::signing_keys(args).await),
        Command::Users(args) => Ok(client::users(args).await),
        Command::Settings(args) => Ok(client::settings(args).await),
    }
}

async fn init(args: InitArgs) -> Result<ExitCode> {
    let resolved = resolve(&args.common)?;
    if let StoreLocation::Sled(dir) = &resolved.store {
        create_private_dir(dir)?;
    }
    let store = resolved.store.open().await?;
    if store.is_initialized().await? {
        bail!(
            "{} is already initialized; nothing was changed",
            resolved.store
        );
    }
    let source = kek_source(&args.common, &resolved)?;
    let kek = match &source {
        KekSource::File(path) if !path.exists() => {
            if let StoreLocation::Sled(dir) = &resolved.store {
                let inside = match (
                    std::fs::canonicalize(dir),
                    path.parent().map(std::fs::canonicalize),
                ) {
                    (Ok(data), Some(Ok(parent))) => parent.starts_with(data),
                    _ => path.starts_with(dir),
                };
                if inside {
                    bail!(
                        "the key-encryption key must not live inside the data directory ({})",
                        path.display()
                    );
                }
            }
            let kek = Kek::generate()?;
            kek.write_new(path)?;
            kek
        }
        source => load_kek(source)?,
    };
    let kek_shown = match &source {
        KekSource::Env(_) => "from CONTROL_PLANE_KEK".to_owned(),
        KekSource::File(path) => path.display().to_string(),
    };
    let root = match &args.offline_root {
        None => RootSetup::Online,
        Some(trust_file) => offline_root(&args, trust_file)?,
    };
    let done =
        ControlPlane::initialize_with(store.as_ref(), &SystemClock, &kek, &args.admin_name, root)
            .await?;
    store.sync().await?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "store": resolved.store.to_string(),
                "kek": kek_shown,
                "admin_id": done.admin.id,
                "admin_name": done.admin.name,
                "admin_token": done.token.expose(),
                "root_kid": done.root_kid,
                "signing_kid": done.signing_kid,
            })
        );
    } else {
        println!("initialized {}", resolved.store);
        println!(
            "key-encryption key: {kek_shown} (keep it apart from the data directory and its backups)"
        );
        if args.offline_root.is_some() {
            println!(
                "root key: {} (held offline: only its public half is stored)",
                done.root_kid
            );
        } else {
            println!("root key: {}", done.root_kid);
        }
        println!("signing key: {}", done.signing_kid);
        println!(
            "super_admin {} ({}) API token, shown once:",
            done.admin.name, done.admin.id
        );
        println!("{}", done.token.expose());
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads what an offline key ceremony produced: the trust file's roots, the
/// first signing key (opened with its passphrase, to be sealed under the KEK)
/// and the root's certificate for it.
fn offline_root(args: &InitArgs, trust_file: &Path) -> Result<RootSetup> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let trust = keys::TrustStore::from_json(&read(trust_file)?)
        .with_context(|| format!("{}", trust_file.display()))?;
    let (Some(key_file), Some(cert_file)) = (&args.signing_key, &args.signing_certificate) else {
        bail!("--offline-root needs --signing-key and --signing-certificate");
    };
    let sealed = keys::keyfile::read_key_file(key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    let passphrase = match &args.signing_passphrase_file {
        Some(path) => read(path)?.lines().next().unwrap_or_default().to_owned(),
        None => std::env::var("CONTROL_PLANE_SIGNING_PASSPHRASE").context(
            "the signing key's passphrase: give --signing-passphrase-file or CONTROL_PLANE_SIGNING_PASSPHRASE",
        )?,
    };
    let signing = keys::keyfile::open(&sealed, &keys::keyfile::Passphrase::new(passphrase))
        .with_context(|| format!("opening {}", key_file.display()))?;
    Ok(RootSetup::Offline {
        roots: trust.roots().cloned().collect(),
        signing: Box::new(signing),
        certificate: read(cert_file)?.trim().to_owned(),
    })
}

async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let resolved = resolve(&args.common)?;
    let listen = args
        .listen
        .or(resolved.file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let issuer = args
        .issuer
        .or(resolved.file.issuer.clone())
        .unwrap_or_else(|| "control-plane".into());
    let tls = match (
        args.tls_cert.or(resolved.file.tls_cert.clone()),
        args.tls_key.or(resolved.file.tls_key.clone()),
    ) {
        (Some(cert), Some(key)) => Some(Tls::load(TlsFiles { cert, key })?),
        (None, None) => None,
        _ => bail!("TLS needs both a certificate (tls_cert) and its key (tls_key)"),
    };
    let allow_plain_http = args.allow_plain_http || resolved.file.allow_plain_http == Some(true);
    // License keys and API tokens travel in every request: in the clear they
    // may only cross loopback, unless the operator says a TLS-terminating proxy
    // sits in front.
    if tls.is_none() && !listen.ip().is_loopback() && !allow_plain_http {
        bail!(
            "refusing to serve plain HTTP on {listen}: give --tls-cert and --tls-key, listen on loopback, \
             or pass --allow-plain-http when a TLS-terminating proxy sits in front"
        );
    }
    if let StoreLocation::Sled(dir) = &resolved.store
        && !dir.exists()
    {
        bail!(
            "{} does not exist: run `control-plane init --data-dir {}` first",
            dir.display(),
            dir.display()
        );
    }
    let store = resolved.store.open().await?;
    if !store.is_initialized().await? {
        bail!(
            "{} is not initialized: run `control-plane init` on it first",
            resolved.store
        );
    }
    let kek = load_kek(&kek_source(&args.common, &resolved)?)?;
    let cp = Arc::new(ControlPlane::open(store.clone(), Arc::new(SystemClock), kek, issuer).await?);
    let interval = args.sweep_interval.unwrap_or(3600);
    tokio::spawn(housekeeping(
        cp.clone(),
        (interval > 0).then(|| std::time::Duration::from_secs(interval)),
        matches!(resolved.store, StoreLocation::Postgres(_)),
    ));
    let file_limits = resolved.file.rate_limits.unwrap_or_default();
    let options = control_plane::http::Options {
        rate_limits: RateLimits {
            activations_per_minute: args
                .activations_per_minute
                .unwrap_or(file_limits.activations_per_minute),
            auth_failures_per_minute: args
                .auth_failures_per_minute
                .unwrap_or(file_limits.auth_failures_per_minute),
            heartbeats_per_minute: args
                .heartbeats_per_minute
                .unwrap_or(file_limits.heartbeats_per_minute),
        },
        tls: tls.is_some(),
        ..control_plane::http::Options::default()
    };
    let router = control_plane::http::router_with(cp, options);
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    // Also without TLS: SIGHUP's default action would kill the server, and
    // `systemctl reload` sends it.
    watch_sighup(tls.clone());
    let shutdown = shutdown_signal();
    let addr = listener.local_addr()?;
    match tls {
        Some(tls) => {
            // Scripts and tests read this line to find the port.
            println!("listening on https://{addr}");
            tracing::info!(%addr, store = %resolved.store, cert = %tls.files().cert.display(), "serving HTTPS");
            control_plane::http::tls::serve_tls(listener, router, &tls, shutdown).await?;
        }
        None => {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            println!("listening on http://{addr}");
            tracing::info!(%addr, store = %resolved.store, "serving plain HTTP");
            control_plane::http::serve(listener, router, shutdown).await?;
        }
    }
    store.sync().await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The certificate renewal check (at start, then every six hours, always),
/// the health sweep (every `sweep_every`, unless disabled) and, when replicas
/// share the store, the reload of the signing key that another replica may have
/// rotated, renewed or revoked (every `SIGNER_REFRESH`). Failures are logged
/// and retried at the next tick; they never stop the server.
async fn housekeeping(
    cp: Arc<ControlPlane>,
    sweep_every: Option<std::time::Duration>,
    shared_store: bool,
) {
    const RENEWAL_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
    let mut renewal = tokio::time::interval(RENEWAL_EVERY);
    let mut sweep = tokio::time::interval(sweep_every.unwrap_or(RENEWAL_EVERY));
    let mut signer = tokio::time::interval(control_plane::service::SIGNER_REFRESH);
    for ticks in [&mut renewal, &mut sweep, &mut signer] {
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = signer.tick(), if shared_store => {
                if let Err(e) = cp.reload_signer().await {
                    tracing::error!(error = %e, "reloading the signing key failed; still signing with the previous one");
                }
            }
            _ = renewal.tick() => {
                if let Err(e) = cp.renew_certificate_if_due().await {
                    tracing::error!(error = %e, "certificate renewal check failed");
                }
            }
            _ = sweep.tick(), if sweep_every.is_some() => {
                match cp.sweep(&control_plane::service::Actor::system()).await {
                    Ok(report) => tracing::info!(?report, "health sweep"),
                    Err(e) => tracing::error!(error = %e, "health sweep failed"),
                }
            }
        }
    }
}

/// Creates the data directory readable by its owner only (an existing one is
/// left as it is).
fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

/// Reloads the TLS certificate and key from their files on every SIGHUP, so a
/// renewed certificate is served without a restart. A reload that fails is
/// logged and the previous certificate stays in use. Without TLS there is
/// nothing to reload and SIGHUP is only logged.
///
/// The handler is installed here, synchronously, before the server announces
/// that it listens: a SIGHUP that arrives before a spawned task first ran
/// would otherwise meet the default action and kill the server.
fn watch_sighup(tls: Option<Tls>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGHUP; TLS reload needs a restart");
                return;
            }
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let Some(tls) = &tls else {
                    tracing::info!("SIGHUP: no TLS certificate to reload");
                    continue;
                };
                match tls.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %tls.files().cert.display(), "TLS certificate reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "TLS reload failed; still serving the previous certificate")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = tls;
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). The handlers are installed when this
/// is called, not when the future is first polled, so a stop signal sent right
/// after the `listening` line still stops the server gracefully.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = interrupt.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn audit_verify(args: StoreArgs) -> Result<ExitCode> {
    let location = match (&args.store, &args.data_dir) {
        (Some(store), _) => StoreLocation::parse(store),
        (None, Some(dir)) => StoreLocation::Sled(dir.clone()),
        (None, None) => bail!("give --store or --data-dir"),
    };
    let store = open_existing(&location).await?;
    match store.verify_audit().await? {
        Ok(count) => {
            println!("audit chain intact: {count} records");
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!(
                "audit chain broken at record {}: {}",
                broken.seq, broken.reason
            );
            Ok(ExitCode::from(4))
        }
    }
}

/// Opens a store that must exist already (a sled directory is not created).
async fn open_existing(location: &StoreLocation) -> Result<Arc<dyn Store>> {
    if let StoreLocation::Sled(dir) = location
        && !dir.exists()
    {
        bail!("{} does not exist", dir.display());
    }
    Ok(location.open().await?)
}

/// `migrate --from sled:DIR --to postgres://...`: copies, then verifies.
async fn migrate(args: MigrateArgs) -> Result<ExitCode> {
    init_logging(LogFormat::Human);
    let from = StoreLocation::parse(&args.from);
    let to_url = args.to;
    if from == StoreLocation::Postgres(to_url.clone()) {
        bail!("--from and --to are the same store");
    }
    let source = open_existing(&from).await.with_context(|| {
        format!("opening {from} (is its control plane still running? stop it first)")
    })?;
    let target = control_plane::store::postgres::PgStore::connect(&to_url).await?;
    let copied = control_plane::store::migrate::migrate(source.as_ref(), &target)
        .await
        .with_context(|| {
            format!(
                "migrating {from} to {}",
                StoreLocation::Postgres(to_url.clone())
            )
        })?;
    println!(
        "migrated and verified: {} licenses, {} users, {} keys, {} audit records (chain intact)",
        copied.licenses, copied.users, copied.keys, copied.audit_records
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_may_start_with_a_hyphen() {
        // A kid is base64url, so about one in 64 starts with `-`.
        for action in ["activate", "retire", "revoke"] {
            assert!(
                Cli::try_parse_from(["control-plane", "signing-keys", action, "-Jabc", "--json"])
                    .is_ok(),
                "{action}"
            );
        }
        assert!(
            Cli::try_parse_from([
                "control-plane",
                "signing-keys",
                "attach-certificate",
                "-Jabc",
                "--certificate",
                "-",
            ])
            .is_ok()
        );
        // A known flag is still a flag, so a missing kid is still a usage error.
        assert!(
            Cli::try_parse_from(["control-plane", "signing-keys", "revoke", "--json"]).is_err()
        );
    }

    #[test]
    fn migrate_copies_into_postgres_only() {
        let parse = |to: &str| {
            Cli::try_parse_from(["control-plane", "migrate", "--from", "sled:/d", "--to", to])
                .map(|_| ())
                .map_err(|e| e.kind())
        };
        assert_eq!(parse("postgres://u@db/licensing"), Ok(()));
        assert_eq!(parse("postgresql://u@db/licensing"), Ok(()));
        for to in ["sled:/e", "/e", "mysql://u@db/licensing"] {
            assert_eq!(
                parse(to),
                Err(clap::error::ErrorKind::ValueValidation),
                "{to}"
            );
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}

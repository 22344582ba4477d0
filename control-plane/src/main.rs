//! `control-plane`: the vendor's licensing server and its offline maintenance
//! commands. Exit codes: 0 success, 1 failure, 2 bad usage, 4 the audit chain
//! is broken.

#![forbid(unsafe_code)]

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use control_plane::clock::SystemClock;
use control_plane::config::{FileConfig, LogFormat, default_kek_file};
use control_plane::domain::audit::verify_chain;
use control_plane::secrets::Kek;
use control_plane::service::ControlPlane;
use control_plane::store::Store as _;
use control_plane::store::sled_store::SledStore;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "control-plane", version, about = "The licensing control plane")]
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
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit hash chain of a stopped control plane's data directory
    Verify(DataArgs),
}

#[derive(Args)]
struct DataArgs {
    /// The data directory
    #[arg(long, env = "CONTROL_PLANE_DATA_DIR")]
    data_dir: PathBuf,
}

#[derive(Args)]
struct CommonArgs {
    /// A TOML config file (flags and environment variables override it)
    #[arg(long, env = "CONTROL_PLANE_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory
    #[arg(long, env = "CONTROL_PLANE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The key-encryption key file [default: <data-dir>.kek, beside the data directory]
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
}

/// The settings after flags, environment and file are merged.
struct Resolved {
    data_dir: PathBuf,
    kek_file: PathBuf,
    file: FileConfig,
}

fn resolve(common: &CommonArgs) -> Result<Resolved> {
    let file = match &common.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let data_dir = common
        .data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .context("no data directory: give --data-dir, CONTROL_PLANE_DATA_DIR or data_dir in the config file")?;
    let kek_file = common
        .kek_file
        .clone()
        .or_else(|| file.kek_file.clone())
        .unwrap_or_else(|| default_kek_file(&data_dir));
    init_logging(
        common
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Human),
    );
    Ok(Resolved {
        data_dir,
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

/// The KEK from `CONTROL_PLANE_KEK` (base64url) or the KEK file.
fn load_kek(path: &Path) -> Result<Kek> {
    if let Ok(text) = std::env::var("CONTROL_PLANE_KEK") {
        return Ok(Kek::from_b64(&text)?);
    }
    Ok(Kek::read(path)?)
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
        Command::Audit(AuditCommand::Verify(args)) => audit_verify(&args.data_dir),
    }
}

async fn init(args: InitArgs) -> Result<ExitCode> {
    let resolved = resolve(&args.common)?;
    std::fs::create_dir_all(&resolved.data_dir)
        .with_context(|| format!("creating {}", resolved.data_dir.display()))?;
    let store = SledStore::open(&resolved.data_dir)?;
    if store.is_initialized().await? {
        bail!(
            "{} is already initialized; nothing was changed",
            resolved.data_dir.display()
        );
    }
    let kek = if std::env::var_os("CONTROL_PLANE_KEK").is_some() || resolved.kek_file.exists() {
        load_kek(&resolved.kek_file)?
    } else {
        let kek = Kek::generate()?;
        kek.write_new(&resolved.kek_file)?;
        kek
    };
    let done = ControlPlane::initialize(&store, &SystemClock, &kek, &args.admin_name).await?;
    store.flush()?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "data_dir": resolved.data_dir,
                "kek_file": resolved.kek_file,
                "admin_id": done.admin.id,
                "admin_name": done.admin.name,
                "admin_token": done.token.expose(),
                "root_kid": done.root_kid,
                "signing_kid": done.signing_kid,
            })
        );
    } else {
        println!("initialized {}", resolved.data_dir.display());
        println!(
            "key-encryption key: {} (keep it apart from the data directory and its backups)",
            resolved.kek_file.display()
        );
        println!("root key: {}", done.root_kid);
        println!("signing key: {}", done.signing_kid);
        println!(
            "super_admin {} ({}) API token, shown once:",
            done.admin.name, done.admin.id
        );
        println!("{}", done.token.expose());
    }
    Ok(ExitCode::SUCCESS)
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
    if !resolved.data_dir.exists() {
        bail!(
            "{} does not exist: run `control-plane init --data-dir {}` first",
            resolved.data_dir.display(),
            resolved.data_dir.display()
        );
    }
    let store = Arc::new(SledStore::open(&resolved.data_dir)?);
    let kek = load_kek(&resolved.kek_file)?;
    let cp = Arc::new(ControlPlane::open(store.clone(), Arc::new(SystemClock), kek, issuer).await?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    // Scripts and tests read this line to find the port.
    println!("listening on http://{addr}");
    tracing::info!(%addr, data_dir = %resolved.data_dir.display(), "serving");
    control_plane::http::serve(listener, cp, shutdown_signal()).await?;
    store.flush()?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn audit_verify(data_dir: &Path) -> Result<ExitCode> {
    if !data_dir.exists() {
        bail!("{} does not exist", data_dir.display());
    }
    let store = SledStore::open(data_dir)?;
    let records = store.audit_records().collect::<Result<Vec<_>, _>>()?;
    match verify_chain(records) {
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

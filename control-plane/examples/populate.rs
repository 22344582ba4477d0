//! `populate`: adds a realistic fleet of licenses to an initialised control
//! plane's data directory, straight through the store (no HTTP), for
//! measurements at fleet scale: `bench/rss-1m.sh` fills a million this way,
//! then serves them with the real `control-plane serve`.
//!
//! ```sh
//! target/release/control-plane init --data-dir DIR
//! cargo run --release -p control-plane --example populate -- --data-dir DIR --licenses 1000000
//! ```
//!
//! The server must not be running: sled is single-process. The licenses are
//! those of the sweep benchmark (`benches/support/fill.rs`) as of now, so a
//! health sweep expires 0.5 % of them and suspends another 0.5 %; their last
//! leases name the data directory's active signing key. This is a measuring
//! tool, not an operator's one, which is why it is an example and not a
//! subcommand of the release binary.

#![forbid(unsafe_code)]

#[path = "../benches/support/fill.rs"]
mod fill;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Parser;
use control_plane::clock::{Clock as _, SystemClock};
use control_plane::config::default_kek_file;
use control_plane::secrets::Kek;
use control_plane::store::sled_store::SledStore;
use control_plane::store::{KeyState, Store as _};
use keys::keyfile::KeyRole;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Add a realistic fleet of licenses to a control plane's data directory")]
struct Args {
    /// The data directory, made by `control-plane init`; no server may have it open
    #[arg(long)]
    data_dir: PathBuf,
    /// The key-encryption key file [default: <data-dir>.kek]
    #[arg(long)]
    kek_file: Option<PathBuf>,
    /// How many licenses to add
    #[arg(long, default_value_t = 1_000_000)]
    licenses: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("populate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("populate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let kek_file = args
        .kek_file
        .unwrap_or_else(|| default_kek_file(&args.data_dir));
    let kek = Kek::read(&kek_file).with_context(|| format!("reading {}", kek_file.display()))?;
    let store = SledStore::open(&args.data_dir)
        .with_context(|| format!("opening {}", args.data_dir.display()))?;
    if !store.is_initialized().await? {
        bail!(
            "{} is not initialised: run `control-plane init` first",
            args.data_dir.display()
        );
    }
    let kid = store
        .keys()
        .await?
        .into_iter()
        .find(|k| k.role == KeyRole::Signing && k.state == KeyState::Active)
        .map(|k| k.kid)
        .ok_or_else(|| anyhow!("the data directory has no active signing key"))?;
    let template = fill::Template::new(&kek, kid)?;
    let now = SystemClock.now();
    let started = Instant::now();
    let filled = fill::fill(&store, &template, args.licenses, now).await?;
    store.flush()?;
    let expire = filled
        .due
        .iter()
        .filter(|(_, d)| *d == fill::Due::Expire)
        .count();
    println!(
        "populate: {} licenses added to {} in {:.1} s ({} bytes of JSON for an active one); a sweep now expires {expire} and suspends {}",
        args.licenses,
        args.data_dir.display(),
        started.elapsed().as_secs_f64(),
        filled.bytes,
        filled.due.len() - expire,
    );
    Ok(())
}

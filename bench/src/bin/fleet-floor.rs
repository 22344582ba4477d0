//! `fleet-floor`: the floors `fleet run` measures beside the control plane, as a
//! separate process on the same HTTP stack (axum on a multi-threaded tokio
//! runtime), so a floor pays what the control plane pays for the process, the
//! sockets and HTTP, and nothing of the licensing.
//!
//! - `POST /bare` reads the body and answers a small fixed JSON: the cheapest
//!   answer to the same request.
//! - `POST /sign` reads the body and signs about 300 bytes of it with an ed25519
//!   key (`keys`), answering the signature: one signature is the least work a
//!   lease needs.
//!
//! It prints `listening on http://ADDR` once bound, and stops on SIGTERM.

#![forbid(unsafe_code)]

use anyhow::{Context as _, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use clap::Parser;
use keys::PrivateKey;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// How many bytes `/sign` signs, about the size of a lease's claims.
const SIGNED_BYTES: usize = 300;

#[derive(Parser)]
#[command(
    name = "fleet-floor",
    version,
    about = "The floor endpoints of the fleet simulator"
)]
struct Cli {
    /// Address to listen on; port 0 picks a free port
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|runtime| runtime.block_on(serve(cli.listen)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet-floor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bare(_body: Bytes) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"ok":true}"#,
    )
}

async fn sign(State(key): State<Arc<PrivateKey>>, body: Bytes) -> impl IntoResponse {
    let mut message = [0u8; SIGNED_BYTES];
    let n = body.len().min(SIGNED_BYTES);
    if let (Some(to), Some(from)) = (message.get_mut(..n), body.get(..n)) {
        to.copy_from_slice(from);
    }
    let signature = keys::b64::encode(key.sign_bytes(&message));
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"signature":"{signature}"}}"#),
    )
}

async fn serve(listen: SocketAddr) -> Result<()> {
    let key = Arc::new(PrivateKey::generate().context("generating the signing key")?);
    let router = Router::new()
        .route("/bare", post(bare))
        .route("/sign", post(sign))
        .with_state(key);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // `fleet run` reads this line to find the port.
    println!("listening on http://{addr}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing a SIGTERM handler")?;
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            term.recv().await;
        })
        .await
        .context("serving")
}

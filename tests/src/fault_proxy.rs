//! A fault-injecting HTTP proxy on loopback, to stand between an appliance and
//! the control plane where a network, a middlebox or a man in the middle would
//! (DESIGN.md "Tokens" → Denials: "A man in the middle must not be able to
//! switch a fleet off").
//!
//! It listens on `127.0.0.1:0` and forwards plain HTTP/1.1 to one upstream
//! address, one request per connection. What it does with the next request is
//! a [`Mode`] that the test switches at run time: pass it on, drop or reset the
//! connection, delay it, answer an unsigned error itself, cut the control
//! plane's answer short, replay an earlier answer, or answer with a denial
//! signed by a key no appliance trusts. It reads whole requests and responses
//! (a `Content-Length` body; the upstream is asked to close after answering, so
//! its response ends at EOF), which is what replaying and truncating need.
//! TLS is not intercepted: a man in the middle without the pinned CA fails the
//! handshake, which the TLS tests cover.
//!
//! Every exchange is recorded (path, mode, the status the client was sent and
//! the status the control plane gave), so a test can assert that the fault it
//! set is the one the appliance met.

use keys::proto::{DenialResponse, DeviceRequest};
use keys::{Denial, DenialReason, KeyCert, KeyUse, PrivateKey, PublicKey, UnixTime};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The largest request or response the proxy reads; the appliance's own cap
/// is 64 KiB, and nothing this proxy relays legitimately comes near this.
const MAX_MESSAGE: usize = 1024 * 1024;
/// Bounds every read and write, so a test that goes wrong fails instead of
/// leaving a connection task behind forever.
const IO_DEADLINE: Duration = Duration::from_secs(60);

/// What the proxy does with the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Forwards the request and relays the answer.
    Pass,
    /// Reads the request, then closes the connection without answering.
    Drop,
    /// Waits this long, then forwards and relays.
    Delay(Duration),
    /// Reads the request, then resets the connection (RST: `SO_LINGER` 0).
    Reset,
    /// Answers itself with this status and body: a proxy's 401, a 500, a 403
    /// with a JSON error but no signed denial, an HTML page. The content type
    /// is JSON when the body starts with `{`, HTML otherwise.
    Unsigned(u16, String),
    /// Forwards, then relays only the first `n` bytes of the answer and closes.
    Truncate(usize),
    /// Answers with the `n`-th genuine answer (oldest first) recorded for the
    /// same path, without forwarding. With none recorded, an unsigned 502.
    Replay(usize),
    /// Answers 403 with a denial-shaped body for the request's license and
    /// nonce, signed by a key certified by a root that no appliance pins.
    ForgeDenial,
}

impl Mode {
    /// A short name for logs and records.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Pass => "pass",
            Mode::Drop => "drop",
            Mode::Delay(_) => "delay",
            Mode::Reset => "reset",
            Mode::Unsigned(..) => "unsigned",
            Mode::Truncate(_) => "truncate",
            Mode::Replay(_) => "replay",
            Mode::ForgeDenial => "forge-denial",
        }
    }
}

/// One request that reached the proxy and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The request's path, e.g. `/licenses/lic_x/heartbeat`.
    pub path: String,
    /// The mode it met ([`Mode::name`]).
    pub mode: &'static str,
    /// The status line the proxy sent (or began to send) to the client; `None`
    /// when it sent none (drop, reset, a truncation inside the status line).
    pub status: Option<u16>,
    /// The control plane's status, when the request was forwarded and answered.
    pub upstream: Option<u16>,
}

/// State shared between the test and the connection tasks.
#[derive(Debug)]
struct Shared {
    mode: Mode,
    exchanges: Vec<Exchange>,
    /// Complete genuine answers by path, oldest first: what [`Mode::Replay`] sends.
    genuine: Vec<(String, Vec<u8>)>,
}

/// The proxy. It stops serving when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    forger_root: PublicKey,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1:0 in front of `upstream`, in [`Mode::Pass`].
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            mode: Mode::Pass,
            exchanges: Vec::new(),
            genuine: Vec::new(),
        }));
        let forger = Arc::new(Forger::new().map_err(std::io::Error::other)?);
        let forger_root = forger.root.public().clone();
        let state = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (state, forger) = (state.clone(), forger.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        IO_DEADLINE,
                        handle(client, upstream, &state, &forger),
                    )
                    .await;
                });
            }
        });
        Ok(FaultProxy {
            addr,
            shared,
            forger_root,
            task,
        })
    }

    /// The proxy's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the next requests meet.
    pub fn set(&self, mode: Mode) {
        self.lock().mode = mode;
    }

    pub fn mode(&self) -> Mode {
        self.lock().mode.clone()
    }

    /// Every exchange so far, oldest first.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.lock().exchanges.clone()
    }

    /// The last exchange, if any.
    pub fn last(&self) -> Option<Exchange> {
        self.lock().exchanges.last().cloned()
    }

    /// The root that certified [`Mode::ForgeDenial`]'s signing key: pinned by
    /// no appliance unless a test wants it trusted.
    pub fn forger_root(&self) -> &PublicKey {
        &self.forger_root
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A connection task that panicked leaves the records as they were.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request as read from the client.
struct Request {
    path: String,
    /// The head to send upstream, `Connection: close` included.
    head: Vec<u8>,
    body: Vec<u8>,
}

async fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    shared: &Mutex<Shared>,
    forger: &Forger,
) {
    let Some(request) = read_request(&mut client).await else {
        return;
    };
    let mode = lock(shared).mode.clone();
    let mut exchange = Exchange {
        path: request.path.clone(),
        mode: mode.name(),
        status: None,
        upstream: None,
    };
    let answer: Option<Vec<u8>> = match &mode {
        Mode::Pass | Mode::Delay(_) | Mode::Truncate(_) => {
            if let Mode::Delay(d) = mode {
                tokio::time::sleep(d).await;
            }
            match forward(upstream, &request).await {
                Some(raw) => {
                    exchange.upstream = status_of(&raw);
                    if exchange.upstream.is_some() {
                        lock(shared)
                            .genuine
                            .push((request.path.clone(), raw.clone()));
                    }
                    match mode {
                        Mode::Truncate(n) => Some(raw[..n.min(raw.len())].to_vec()),
                        _ => Some(raw),
                    }
                }
                // The control plane did not answer: the client sees a 502,
                // as it would from a real proxy.
                None => Some(response(502, "text/plain", b"bad gateway")),
            }
        }
        Mode::Drop | Mode::Reset => None,
        Mode::Unsigned(status, body) => {
            let kind = if body.starts_with('{') {
                "application/json"
            } else {
                "text/html; charset=utf-8"
            };
            Some(response(*status, kind, body.as_bytes()))
        }
        Mode::Replay(n) => {
            let recorded = lock(shared)
                .genuine
                .iter()
                .filter(|(path, _)| *path == request.path)
                .nth(*n)
                .map(|(_, raw)| raw.clone());
            Some(recorded.unwrap_or_else(|| response(502, "text/plain", b"nothing to replay")))
        }
        Mode::ForgeDenial => Some(match forger.denial(&request) {
            Some(body) => response(403, "application/json", &body),
            None => response(400, "text/plain", b"not a device request"),
        }),
    };
    exchange.status = answer.as_deref().and_then(status_of);
    lock(shared).exchanges.push(exchange);
    match answer {
        Some(bytes) => {
            let _ = client.write_all(&bytes).await;
            let _ = client.shutdown().await;
        }
        None if mode == Mode::Reset => {
            // SO_LINGER 0: closing sends RST instead of FIN.
            let _ = client.set_zero_linger();
        }
        None => {
            let _ = client.shutdown().await;
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads one request with a `Content-Length` body (or none); `None` if the
/// client went away or sent something else.
async fn read_request(client: &mut TcpStream) -> Option<Request> {
    let (head, mut body) = read_head(client).await?;
    let text = std::str::from_utf8(&head).ok()?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let path = request_line.split(' ').nth(1)?.to_owned();
    let mut length = 0usize;
    let mut upstream_head = format!("{request_line}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let name_lower = name.trim().to_ascii_lowercase();
        match name_lower.as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            // Only fixed-length bodies are relayed (what reqwest sends for a
            // body it holds in memory).
            "transfer-encoding" => return None,
            // Hop-by-hop headers are the proxy's own business.
            "connection" | "keep-alive" | "proxy-connection" | "upgrade" => continue,
            _ => {}
        }
        upstream_head.push_str(line);
        upstream_head.push_str("\r\n");
    }
    upstream_head.push_str("Connection: close\r\n\r\n");
    if length > MAX_MESSAGE {
        return None;
    }
    let mut chunk = [0u8; 8192];
    while body.len() < length {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(Request {
        path,
        head: upstream_head.into_bytes(),
        body,
    })
}

/// Reads up to the blank line; returns the head (without it) and what followed.
async fn read_head(stream: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            buf.truncate(i);
            return Some((buf, rest));
        }
        if buf.len() > MAX_MESSAGE {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends the request upstream and reads the whole answer (to EOF: the request
/// asked the server to close). `None` if no answer came.
async fn forward(upstream: SocketAddr, request: &Request) -> Option<Vec<u8>> {
    let mut server = TcpStream::connect(upstream).await.ok()?;
    server.write_all(&request.head).await.ok()?;
    server.write_all(&request.body).await.ok()?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = server.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > MAX_MESSAGE {
            return None;
        }
    }
    Some(close_after(&raw))
}

/// The response with its `Connection` header replaced by `Connection: close`,
/// so the client does not try to reuse a connection this proxy will close.
fn close_after(raw: &[u8]) -> Vec<u8> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return raw.to_vec();
    };
    let Ok(head) = std::str::from_utf8(&raw[..end]) else {
        return raw.to_vec();
    };
    let mut out = String::new();
    for line in head.split("\r\n") {
        let hop = line.split_once(':').is_some_and(|(name, _)| {
            matches!(
                name.trim().to_ascii_lowercase().as_str(),
                "connection" | "keep-alive"
            )
        });
        if !hop {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&raw[end + 4..]);
    bytes
}

/// A complete response made by the proxy itself.
fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 {status} Proxy\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The status code of a response's status line, if that much of it is there.
fn status_of(raw: &[u8]) -> Option<u16> {
    let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&raw[..line_end]).ok()?;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A signing key certified by a root of its own, which no appliance pins.
struct Forger {
    root: PrivateKey,
    signing: PrivateKey,
    chain: Vec<String>,
}

impl std::fmt::Debug for Forger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forger").finish_non_exhaustive()
    }
}

impl Forger {
    fn new() -> Result<Forger, keys::Error> {
        let root = PrivateKey::generate()?;
        let signing = PrivateKey::generate()?;
        let cert = keys::sign(
            &root,
            &KeyCert {
                iss: "fault-proxy".into(),
                iat: UnixTime(0),
                nbf: UnixTime(0),
                exp: UnixTime(4_000_000_000),
                jti: "fault-proxy-cert".into(),
                kid: signing.kid().to_string(),
                public: signing.public().to_b64(),
                key_use: KeyUse::Lease,
                pop: None,
            },
        )?;
        Ok(Forger {
            root,
            signing,
            chain: vec![cert],
        })
    }

    /// A 403 body denying exactly this request: its license, its nonce, its
    /// time. Everything an appliance checks matches except who signed it.
    fn denial(&self, request: &Request) -> Option<Vec<u8>> {
        let device: DeviceRequest = serde_json::from_slice(&request.body).ok()?;
        let iat = UnixTime(device.sent_at);
        let claims = Denial {
            iss: "fault-proxy".into(),
            sub: device.license_id.clone(),
            iat,
            nbf: iat,
            exp: iat.plus(3600),
            jti: format!("forged-{}", device.counter),
            reason: DenialReason::Revoked,
            nonce: device.nonce.clone(),
        };
        let body = DenialResponse {
            error: "revoked".into(),
            message: "license denied: revoked".into(),
            denial: keys::sign(&self.signing, &claims).ok()?,
            chain: self.chain.clone(),
            revoked_kids: Vec::new(),
        };
        serde_json::to_vec(&body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// An upstream answering every POST with `{"n": <count>}`.
    async fn upstream() -> SocketAddr {
        let count = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::post(move || {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                async move { axum::Json(serde_json::json!({ "n": n })) }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    async fn post(
        proxy: &FaultProxy,
        path: &str,
        body: &str,
    ) -> Result<(u16, String), reqwest::Error> {
        let response = client()
            .post(format!("{}{path}", proxy.url()))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    #[tokio::test]
    async fn each_mode_does_what_it_says() {
        let proxy = FaultProxy::start(upstream().await).await.unwrap();
        let hb = "/licenses/lic_1/heartbeat";

        assert_eq!(
            post(&proxy, hb, "{}").await.unwrap(),
            (200, r#"{"n":1}"#.into())
        );
        assert_eq!(
            post(&proxy, hb, "{}").await.unwrap(),
            (200, r#"{"n":2}"#.into())
        );

        // Replays never reach the upstream: the next pass answers n = 3.
        proxy.set(Mode::Replay(0));
        assert_eq!(post(&proxy, hb, "{}").await.unwrap().1, r#"{"n":1}"#);
        proxy.set(Mode::Replay(1));
        assert_eq!(post(&proxy, hb, "{}").await.unwrap().1, r#"{"n":2}"#);
        // Nothing recorded for another path.
        assert_eq!(
            post(&proxy, "/licenses/lic_2/heartbeat", "{}")
                .await
                .unwrap()
                .0,
            502
        );

        proxy.set(Mode::Unsigned(401, r#"{"error":"unauthenticated"}"#.into()));
        assert_eq!(
            post(&proxy, hb, "{}").await.unwrap(),
            (401, r#"{"error":"unauthenticated"}"#.into())
        );

        for mode in [
            Mode::Drop,
            Mode::Reset,
            Mode::Truncate(10),
            Mode::Truncate(60),
        ] {
            proxy.set(mode.clone());
            assert!(post(&proxy, hb, "{}").await.is_err(), "{mode:?}");
        }

        proxy.set(Mode::Delay(Duration::from_millis(300)));
        let started = std::time::Instant::now();
        assert_eq!(post(&proxy, hb, "{}").await.unwrap().0, 200);
        assert!(started.elapsed() >= Duration::from_millis(300));

        let device = PrivateKey::generate().unwrap();
        let request = DeviceRequest::sign(
            keys::proto::RequestKind::Heartbeat,
            "lic_1",
            "pk_x",
            Default::default(),
            &device,
            "nonce-1".into(),
            7,
            "1".into(),
            1_800_000_000,
        );
        proxy.set(Mode::ForgeDenial);
        let (status, body) = post(&proxy, hb, &serde_json::to_string(&request).unwrap())
            .await
            .unwrap();
        assert_eq!(status, 403);
        let denial: DenialResponse = serde_json::from_str(&body).unwrap();
        let claims = keys::inspect(&denial.denial).unwrap().claims;
        assert_eq!(claims["nonce"], "nonce-1");
        assert_eq!(claims["sub"], "lic_1");
        // Signed under the forger's root, and only that root verifies it.
        let forged = keys::TrustStore::new([proxy.forger_root().clone()]);
        assert!(
            forged
                .verify_denial_at(&denial.denial, &denial.chain[0], UnixTime(1_800_000_000))
                .is_ok()
        );

        let seen: Vec<(&str, Option<u16>, Option<u16>)> = proxy
            .exchanges()
            .iter()
            .map(|e| (e.mode, e.status, e.upstream))
            .collect();
        assert_eq!(
            seen,
            [
                ("pass", Some(200), Some(200)),
                ("pass", Some(200), Some(200)),
                ("replay", Some(200), None),
                ("replay", Some(200), None),
                ("replay", Some(502), None),
                ("unsigned", Some(401), None),
                ("drop", None, None),
                ("reset", None, None),
                // 10 bytes end inside the status line; 60 inside the head.
                ("truncate", None, Some(200)),
                ("truncate", Some(200), Some(200)),
                ("delay", Some(200), Some(200)),
                ("forge-denial", Some(403), None),
            ]
        );
        // On the wire: a drop is a clean close (EOF), a reset is an RST.
        let raw_read = || async {
            let mut stream = TcpStream::connect(proxy.addr()).await?;
            stream
                .write_all(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                .await?;
            let mut buf = [0u8; 64];
            stream.read(&mut buf).await
        };
        proxy.set(Mode::Drop);
        assert_eq!(raw_read().await.unwrap(), 0);
        proxy.set(Mode::Reset);
        assert_eq!(
            raw_read().await.unwrap_err().kind(),
            std::io::ErrorKind::ConnectionReset
        );

        proxy.set(Mode::Pass);
        // Six requests were forwarded: two passes, two truncations, the delay.
        assert_eq!(post(&proxy, hb, "{}").await.unwrap().1, r#"{"n":6}"#);
    }
}

//! How the appliance talks to the control plane: one JSON POST with a bearer
//! token, answered by a status and a bounded body.
//!
//! This module holds no policy. Every HTTP answer, a redirect, a proxy's 401 or a
//! 500 included, comes back as a plain [`Response`]; what it means is the agent's
//! call, and DESIGN.md ("Tokens" → Denials) says only a verified denial may lock,
//! so nothing here can turn a network event into a lock. What this module does
//! guard is the process: timeouts bound how long a call can hang, and the body
//! cap bounds what a hostile server or proxy can make the appliance allocate.
//!
//! [`Transport`] is a trait so that the agent's tests can script the control
//! plane without a socket; [`HttpTransport`] is the real one (reqwest, rustls).

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use std::time::Duration;

/// The largest response body accepted. A lease with its certificate chain and
/// revocation list is a few KiB; anything far larger is not from our server.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Bounds the TCP (and proxy) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds the whole exchange, body included, so a server that trickles bytes
/// cannot hold a heartbeat forever.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Lets the vendor's logs and proxies tell appliance traffic and versions apart.
const USER_AGENT: &str = concat!("appliance-license/", env!("CARGO_PKG_VERSION"));

/// A response: status and body, the body capped at [`MAX_RESPONSE_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why no response came back. The agent treats all of these as "offline".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// No connection: refused, unreachable, DNS failure, proxy failure.
    #[error("cannot connect to the control plane: {0}")]
    Connect(String),
    /// The connection or the whole exchange took longer than allowed.
    #[error("the control plane did not answer in time")]
    Timeout,
    /// The response body is larger than [`MAX_RESPONSE_BYTES`].
    #[error("the control plane's response exceeds the 64 KiB limit")]
    TooLarge,
    /// The exchange failed after connecting (reset, malformed HTTP, ...), or the
    /// request could not be formed.
    #[error("exchange with the control plane failed: {0}")]
    Io(String),
    /// The URL is not an absolute `http`/`https` URL without credentials.
    #[error("invalid control plane url: {0}")]
    InvalidUrl(String),
    /// The pinned CA is unusable, or the TLS handshake failed (which includes a
    /// server certificate that does not chain to the trusted roots).
    #[error("tls error: {0}")]
    Tls(String),
}

/// Sends the appliance's requests.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug + 'static {
    /// POSTs a JSON body to `url` with `Authorization: Bearer {bearer}`.
    async fn post_json(&self, url: &str, bearer: &str, body: Vec<u8>)
    -> Result<Response, NetError>;
}

/// The transport of the commands that only read local state (`status`,
/// `check`): every request fails as "offline", and building it costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNetwork;

#[async_trait::async_trait]
impl Transport for NoNetwork {
    async fn post_json(&self, _: &str, _: &str, _: Vec<u8>) -> Result<Response, NetError> {
        Err(NetError::Connect(
            "this command does not use the network".to_owned(),
        ))
    }
}

/// The HTTP(S) transport: rustls, no redirects, bounded time and body.
#[derive(Debug)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// `ca_pem`: when given, the ONLY trusted CA for HTTPS (a pinned CA);
    /// otherwise the platform's roots.
    ///
    /// Proxies come from the environment (`HTTPS_PROXY`, `NO_PROXY`...), since
    /// on-prem networks often allow only proxied egress. Plain `http://` URLs are
    /// allowed: whether to accept them is the agent's decision, not this layer's.
    pub fn new(ca_pem: Option<&[u8]>) -> Result<HttpTransport, NetError> {
        Self::configured(ca_pem, CONNECT_TIMEOUT, TOTAL_TIMEOUT, true)
    }

    /// A transport with short timeouts and no proxy, so tests stay fast and do
    /// not depend on the proxy variables of the machine running them.
    #[cfg(test)]
    fn with_timeouts(connect: Duration, total: Duration) -> Result<HttpTransport, NetError> {
        Self::configured(None, connect, total, false)
    }

    fn configured(
        ca_pem: Option<&[u8]>,
        connect: Duration,
        total: Duration,
        system_proxy: bool,
    ) -> Result<HttpTransport, NetError> {
        let base = || {
            let builder = reqwest::Client::builder()
                .connect_timeout(connect)
                .timeout(total)
                // A redirect is returned as its 3xx status, never followed: the
                // control plane does not redirect, so one comes from a proxy or
                // a captive portal, and following it would hand the license key
                // to whoever it points at.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(USER_AGENT);
            if system_proxy {
                builder
            } else {
                builder.no_proxy()
            }
        };
        let tls_error = |e: reqwest::Error| NetError::Tls(describe(&e));

        let Some(pem) = ca_pem else {
            return match base().build() {
                Ok(client) => Ok(HttpTransport { client }),
                // With the platform's roots, building fails when the box has no
                // CA certificates at all (a minimal container). That must not
                // stop an appliance whose control plane is plain HTTP on
                // loopback, so fall back to a client that trusts nothing: HTTPS
                // then fails per request with a TLS error naming the unknown
                // issuer, which the agent reports as offline.
                Err(e) => {
                    tracing::warn!(
                        error = %describe(&e),
                        "no usable platform CA certificates; HTTPS to the control plane will fail"
                    );
                    let client = base().tls_certs_only([]).build().map_err(tls_error)?;
                    Ok(HttpTransport { client })
                }
            };
        };
        // reqwest accepts PEM text with no certificate in it and would then
        // trust nothing, which would only show later as a network fault; refuse
        // it now. Malformed certificates fail in `build` below.
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(tls_error)?;
        if certs.is_empty() {
            return Err(NetError::Tls(
                "the pinned CA file holds no PEM certificate".into(),
            ));
        }
        // `tls_certs_only` drops the platform's roots: with a pinned CA, a public
        // CA (or one a middlebox installed on the box) must not be able to vouch
        // for the control plane.
        let client = base().tls_certs_only(certs).build().map_err(tls_error)?;
        Ok(HttpTransport { client })
    }
}

#[async_trait::async_trait]
impl Transport for HttpTransport {
    async fn post_json(
        &self,
        url: &str,
        bearer: &str,
        body: Vec<u8>,
    ) -> Result<Response, NetError> {
        let url = parse_url(url)?;
        let mut authorization = HeaderValue::try_from(format!("Bearer {bearer}"))
            .map_err(|_| NetError::Io("the bearer token is not a valid header value".into()))?;
        // Keeps the license key out of any debug output of the request.
        authorization.set_sensitive(true);
        let mut response = self
            .client
            .post(url)
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();

        // A declared length over the cap is refused without reading; the length
        // also sizes the buffer, but only up to the cap, since it may lie.
        let declared = response.content_length();
        if declared.is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Err(NetError::TooLarge);
        }
        let capacity = declared.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
        let mut out = Vec::with_capacity(capacity);
        // Chunked or close-delimited bodies have no declared length: count as
        // they arrive and stop at the first chunk that crosses the cap.
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if chunk.len() > MAX_RESPONSE_BYTES - out.len() {
                return Err(NetError::TooLarge);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Response { status, body: out })
    }
}

/// Accepts absolute `http`/`https` URLs with a host and no credentials. Userinfo
/// is refused because reqwest would turn it into a second Authorization header
/// and because it would show in error messages and logs.
fn parse_url(url: &str) -> Result<reqwest::Url, NetError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| NetError::InvalidUrl(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(NetError::InvalidUrl(format!(
            "unsupported scheme {:?}",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(NetError::InvalidUrl("the url has no host".into()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(NetError::InvalidUrl(
            "credentials in the url are not allowed".into(),
        ));
    }
    Ok(parsed)
}

/// Maps a reqwest error onto the variants the agent reports.
fn classify(err: reqwest::Error) -> NetError {
    if err.is_timeout() || has_io_error(&err, std::io::ErrorKind::TimedOut) {
        return NetError::Timeout;
    }
    let detail = describe(&err);
    if err.is_builder() {
        return NetError::InvalidUrl(detail);
    }
    // rustls failures (bad record, untrusted certificate, wrong name) reach us
    // through tokio-rustls as I/O errors of kind InvalidData; hyper reports its
    // own parse errors differently, so this singles out TLS.
    if has_io_error(&err, std::io::ErrorKind::InvalidData) {
        return NetError::Tls(detail);
    }
    if err.is_connect() {
        return NetError::Connect(detail);
    }
    NetError::Io(detail)
}

/// Whether the error's cause chain holds an I/O error of `kind`.
fn has_io_error(err: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        current = match e.downcast_ref::<std::io::Error>() {
            Some(io) if io.kind() == kind => return true,
            // An io::Error wrapping another (hyper-rustls wraps rustls's
            // InvalidData error in an `Other` one) hides the inner one from
            // `source()`, so step into it explicitly.
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => e.source(),
            },
            None => e.source(),
        };
    }
    false
}

/// The error and its causes on one line: reqwest's own message ("error sending
/// request") says little, the root cause ("Connection refused") is what an
/// operator needs.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;

    /// What the scripted server does with one connection.
    enum Reply {
        /// Reads the request, then writes these bytes and closes.
        Bytes(Vec<u8>),
        /// Reads the request and never answers (until the client hangs up).
        Silent,
        /// Writes these bytes without reading a request (for a TLS client
        /// talking to a plain HTTP server), then waits for the client to close.
        Unprompted(Vec<u8>),
    }

    /// A request as the server saw it: the head, lower-cased, and the body.
    #[derive(Debug)]
    struct Seen {
        head: String,
        body: Vec<u8>,
    }

    /// A tiny HTTP/1.1 server on 127.0.0.1:0 answering one connection per reply,
    /// in order. Returns its base URL and what it saw.
    fn serve(replies: Vec<Reply>) -> (String, mpsc::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for reply in replies {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                // A safety net so a broken test fails instead of hanging; no
                // test waits on it.
                let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                match reply {
                    Reply::Bytes(bytes) => {
                        if let Some(seen) = read_request(&mut stream) {
                            let _ = tx.send(seen);
                        }
                        // The client may hang up early (body too large): fine.
                        let _ = stream.write_all(&bytes);
                        let _ = stream.flush();
                    }
                    Reply::Silent => {
                        if let Some(seen) = read_request(&mut stream) {
                            let _ = tx.send(seen);
                        }
                        drain(&mut stream);
                    }
                    Reply::Unprompted(bytes) => {
                        let _ = stream.write_all(&bytes);
                        drain(&mut stream);
                    }
                }
            }
        });
        (format!("http://{addr}"), rx)
    }

    fn read_request(stream: &mut TcpStream) -> Option<Seen> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(Seen { head, body })
    }

    /// Reads until the peer closes, so the server never resets a connection
    /// the client is still using.
    fn drain(stream: &mut TcpStream) {
        let mut chunk = [0u8; 4096];
        while matches!(stream.read(&mut chunk), Ok(n) if n > 0) {}
    }

    fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    fn chunked(total: usize) -> Vec<u8> {
        let mut out =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        let mut left = total;
        while left > 0 {
            let n = left.min(4096);
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend(std::iter::repeat_n(b'x', n));
            out.extend_from_slice(b"\r\n");
            left -= n;
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    fn transport() -> HttpTransport {
        HttpTransport::with_timeouts(CONNECT_TIMEOUT, TOTAL_TIMEOUT).unwrap()
    }

    #[tokio::test]
    async fn ok_response_is_returned_and_the_request_carries_bearer_and_body() {
        let answer = br#"{"lease":"x.y.z"}"#;
        let (base, seen) = serve(vec![Reply::Bytes(response(
            "200 OK",
            "Content-Type: application/json\r\n",
            answer,
        ))]);
        let transport: &dyn Transport = &transport();
        let sent = br#"{"kind":"heartbeat"}"#.to_vec();
        let got = transport
            .post_json(&format!("{base}/v1/heartbeat"), "pk_secret", sent.clone())
            .await
            .unwrap();
        assert_eq!(
            got,
            Response {
                status: 200,
                body: answer.to_vec()
            }
        );
        let seen = seen.recv().unwrap();
        assert!(
            seen.head.starts_with("post /v1/heartbeat http/1.1\r\n"),
            "{}",
            seen.head
        );
        assert!(
            seen.head
                .contains("\r\nauthorization: bearer pk_secret\r\n")
        );
        assert!(seen.head.contains("\r\ncontent-type: application/json\r\n"));
        let agent = format!(
            "\r\nuser-agent: appliance-license/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        assert!(seen.head.contains(&agent), "{}", seen.head);
        assert_eq!(seen.body, sent);
    }

    #[tokio::test]
    async fn no_network_fails_every_request_as_a_connection_failure() {
        // A connection failure is "offline" to the agent, never a lock.
        let got = NoNetwork
            .post_json("https://cp.example/licenses/x/heartbeat", "k", Vec::new())
            .await;
        assert!(matches!(got, Err(NetError::Connect(_))), "{got:?}");
    }

    #[tokio::test]
    async fn server_errors_are_responses_not_errors() {
        let (base, _seen) = serve(vec![Reply::Bytes(response(
            "500 Internal Server Error",
            "",
            b"oops",
        ))]);
        let got = transport()
            .post_json(&base, "k", b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(got.status, 500);
        assert_eq!(got.body, b"oops");
    }

    #[tokio::test]
    async fn a_declared_body_over_the_cap_is_refused() {
        let body = vec![b'x'; 1024 * 1024];
        let (base, _seen) = serve(vec![Reply::Bytes(response("200 OK", "", &body))]);
        let err = transport()
            .post_json(&base, "k", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::TooLarge), "{err:?}");
    }

    #[tokio::test]
    async fn an_undeclared_chunked_body_over_the_cap_is_refused() {
        let (base, _seen) = serve(vec![Reply::Bytes(chunked(1024 * 1024))]);
        let err = transport()
            .post_json(&base, "k", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::TooLarge), "{err:?}");
    }

    #[tokio::test]
    async fn a_close_delimited_body_one_byte_over_the_cap_is_refused() {
        let mut bytes = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', MAX_RESPONSE_BYTES + 1));
        let (base, _seen) = serve(vec![Reply::Bytes(bytes)]);
        let err = transport()
            .post_json(&base, "k", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::TooLarge), "{err:?}");
    }

    #[tokio::test]
    async fn a_body_of_exactly_the_cap_is_accepted() {
        let (base, _seen) = serve(vec![Reply::Bytes(chunked(MAX_RESPONSE_BYTES))]);
        let got = transport()
            .post_json(&base, "k", b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(got.body.len(), MAX_RESPONSE_BYTES);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let (base, seen) = serve(vec![Reply::Silent]);
        let short = Duration::from_millis(300);
        let transport = HttpTransport::with_timeouts(short, short).unwrap();
        let err = transport
            .post_json(&base, "k", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Timeout), "{err:?}");
        // The request did reach the server: this was not a connect failure.
        assert!(seen.try_recv().is_ok());
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = transport()
            .post_json(&format!("http://{addr}/"), "k", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Connect(_)), "{err:?}");
        assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    }

    #[tokio::test]
    async fn redirects_are_returned_not_followed() {
        let (base, seen) = serve(vec![
            Reply::Bytes(response("302 Found", "Location: /elsewhere\r\n", b"")),
            Reply::Bytes(response("200 OK", "", b"followed")),
        ]);
        let got = transport()
            .post_json(&base, "k", b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(got.status, 302);
        // Had the redirect been followed, the server would have seen a second
        // request before this call returned.
        assert_eq!(seen.try_iter().count(), 1);
    }

    #[tokio::test]
    async fn https_to_a_plain_http_server_is_a_tls_error() {
        let (base, _seen) = serve(vec![Reply::Unprompted(
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n".to_vec(),
        )]);
        let url = base.replacen("http://", "https://", 1);
        let err = transport()
            .post_json(&url, "k", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Tls(_)), "{err:?}");
    }

    #[test]
    fn unusable_pinned_cas_are_tls_errors() {
        let garbage_der =
            b"-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
        let key_only =
            b"-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END PRIVATE KEY-----\n";
        let bad_base64 = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        for pem in [
            &b"not a pem"[..],
            &b""[..],
            &garbage_der[..],
            &key_only[..],
            &bad_base64[..],
        ] {
            let result = HttpTransport::new(Some(pem));
            assert!(
                matches!(result, Err(NetError::Tls(_))),
                "{:?} gave {result:?}",
                String::from_utf8_lossy(pem)
            );
        }
    }

    #[tokio::test]
    async fn malformed_urls_are_refused_before_any_io() {
        let transport = transport();
        for url in [
            "not a url",
            "/relative/path",
            "ftp://127.0.0.1/",
            "file:///etc/passwd",
            "http://user:pw@127.0.0.1/",
        ] {
            let err = transport
                .post_json(url, "k", b"{}".to_vec())
                .await
                .unwrap_err();
            assert!(matches!(err, NetError::InvalidUrl(_)), "{url}: {err:?}");
        }
        let err = transport
            .post_json("http://127.0.0.1:9/", "bad\ntoken", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Io(_)), "{err:?}");
    }

    #[test]
    fn the_production_constructor_builds_with_and_without_a_pinned_ca() {
        HttpTransport::new(None).unwrap();
        HttpTransport::new(Some(TEST_CA_PEM.as_bytes())).unwrap();
    }

    /// A throwaway self-signed P-256 CA (its key was discarded). It is only
    /// parsed here, never used to verify, so its validity dates do not matter.
    const TEST_CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBijCCAS+gAwIBAgIUIbLW5x22xB4OWt7Uk6P5+4N7mZowCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHdGVzdC1jYTAeFw0yNjExMjMxOTEwNTVaFw0yNjExMjUxOTEw
NTVaMBIxEDAOBgNVBAMMB3Rlc3QtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AAT97LUuxf0tr/XROpUMR7dYhocGfLM6cg57GH5qO9HwVHYDbPlsVUnJGmgNzCbj
LbO5ttyBRKYU+WsvYUTFzoY2o2MwYTAdBgNVHQ4EFgQUhPSeT9/8YCpgKMepRc29
BynFZZIwHwYDVR0jBBgwFoAUhPSeT9/8YCpgKMepRc29BynFZZIwDwYDVR0TAQH/
BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAgQwCgYIKoZIzj0EAwIDSQAwRgIhAJgjVr9J
F6I0InZoob3LceT7XQp9bKtF+nzUFl5ki7kEAiEA7k79snL+bEG6lQFFG2yPMVp/
nUoAeYIVpJVWMiJRzAE=
-----END CERTIFICATE-----
";
}

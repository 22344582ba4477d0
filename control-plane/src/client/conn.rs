//! The admin CLI's connection to a running control plane: the global options
//! (`--server`, `--token`, `--token-file`, `--ca-file`, `--json`), the HTTP
//! client (rustls, an optional pinned CA, bounded time, no redirects), and the
//! mapping of every failure onto the CLI's exit codes ([`Failure::exit_code`]).
//!
//! It does not know the routes' meanings: `client/mod.rs` says what to send and
//! how to print the answer.

use clap::Args;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// How long to wait for a connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take, answer included.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read (a page of 1000 audit records is well under 1 MiB).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Connection options, shared by every client command. They are global, so they
/// may come before or after the action (`licenses --json list`, `licenses list --json`).
#[derive(Args, Debug)]
#[command(next_help_heading = "Connection")]
pub struct ConnArgs {
    /// The control plane's base URL (http or https)
    #[arg(
        long,
        global = true,
        env = "CONTROL_PLANE_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    server: String,
    /// The API token [env: CONTROL_PLANE_TOKEN]. Other local users can read a
    /// command line (`ps`): prefer --token-file or the environment
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding the API token (the preferred way) [env: CONTROL_PLANE_TOKEN_FILE]
    #[arg(long, global = true, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// For https: trust only this CA (PEM), not the system's roots
    #[arg(long, global = true, env = "CONTROL_PLANE_CA_FILE", value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Print the server's JSON answer as it is (errors too, on standard output), for scripts
    #[arg(long, global = true)]
    pub json: bool,
}

/// Why a client command failed; each kind has its exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments found before anything was sent (exit 2, like clap's).
    Usage(String),
    /// The server could not be reached, or the exchange broke off (exit 3).
    Unreachable(String),
    /// The server answered with an error status.
    Server {
        status: u16,
        /// The `error` code of the body (or `http_<status>` when it has none).
        code: String,
        message: String,
        /// The body as received, when it was JSON.
        body: Option<String>,
        /// Whether the body carries a signed `denial` (a refusal by state).
        denial: bool,
    },
    /// Anything else: a local file, an unexpected answer (exit 1).
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Other(e)
    }
}

impl Failure {
    /// The exit code (the table is in main.rs's doc comment and in
    /// docs/operations.md "Admin CLI").
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::Other(_) => 1,
            Failure::Server { status, denial, .. } => match status {
                500..=599 => 3,
                // A signed denial (offline activation of an expired, suspended
                // or rebound license) refuses the license's state, not the caller.
                401 | 403 if *denial => 7,
                401 | 403 => 5,
                404 => 6,
                409 | 422 => 7,
                400..=499 => 8,
                // Redirects (never followed) and anything else unexpected.
                _ => 1,
            },
        }
    }

    /// `<code>: <message>`, printed after `control-plane: ` on standard error.
    pub fn describe(&self) -> String {
        match self {
            Failure::Usage(m) => format!("usage: {m}"),
            Failure::Unreachable(m) => format!("unreachable: {m}"),
            Failure::Other(e) => format!("{e:#}"),
            Failure::Server { code, message, .. } => format!("{code}: {message}"),
        }
    }

    /// What `--json` prints on standard output: the server's error body as it
    /// came, or an error document of the same shape when there is none.
    pub fn json(&self) -> String {
        let (error, message) = match self {
            Failure::Server {
                body: Some(body), ..
            } => return body.clone(),
            Failure::Server { code, message, .. } => (code.clone(), message.clone()),
            Failure::Usage(m) => ("usage".into(), m.clone()),
            Failure::Unreachable(m) => ("unreachable".into(), m.clone()),
            Failure::Other(e) => ("failed".into(), format!("{e:#}")),
        };
        json!({"error": error, "message": message}).to_string()
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// A successful answer: the body as received and parsed.
#[derive(Debug)]
pub struct Answer {
    pub text: String,
    pub value: Value,
}

/// A client for one control plane, with one API token.
#[derive(Debug)]
pub struct Conn {
    client: reqwest::Client,
    base: reqwest::Url,
    authorization: HeaderValue,
}

impl Conn {
    /// Reads the token and the CA file and builds the client.
    pub fn open(args: &ConnArgs) -> Result<Conn> {
        let base = parse_server(&args.server)?;
        let token = read_token(args)?;
        if base.scheme() == "http" && !is_loopback(&base) {
            // Allowed (a private network may be trusted), but never silently.
            eprintln!(
                "control-plane: warning: {base} is plain http: the API token crosses the network in the clear"
            );
        }
        let mut authorization = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Failure::Usage("the API token is not a valid header value".into()))?;
        // Keeps the token out of any debug output of the request.
        authorization.set_sensitive(true);
        let builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            // A redirect is reported, never followed: following it would hand
            // the API token to whatever host it names.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("control-plane-cli/", env!("CARGO_PKG_VERSION")));
        let builder = match &args.ca_file {
            None => builder,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Failure::Other(anyhow::anyhow!("reading {}: {e}", path.display()))
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    Failure::Other(anyhow::anyhow!("{}: {}", path.display(), describe(&e)))
                })?;
                // reqwest would accept a PEM file with no certificate and then
                // trust nothing; say so now rather than as a TLS failure later.
                if certs.is_empty() {
                    return Err(Failure::Other(anyhow::anyhow!(
                        "{} holds no PEM certificate",
                        path.display()
                    )));
                }
                // Only this CA: a public CA must not vouch for the control plane.
                builder.tls_certs_only(certs)
            }
        };
        let client = builder.build().map_err(|e| {
            Failure::Other(anyhow::anyhow!(
                "cannot build the HTTP client: {}",
                describe(&e)
            ))
        })?;
        Ok(Conn {
            client,
            base,
            authorization,
        })
    }

    /// Sends one request to the route made of `segments` (each percent-encoded,
    /// so an id can never reach another route) with `query`, and an optional
    /// JSON body. A 2xx answer comes back; anything else is a [`Failure`].
    pub async fn call(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| Failure::Usage("the server URL cannot take a path".into()))?;
            path.pop_if_empty();
            for segment in segments {
                path.push(segment);
            }
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        let mut request = self
            .client
            .request(method, url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if response
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(Failure::Other(anyhow::anyhow!(
                "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if chunk.len() > MAX_RESPONSE_BYTES - bytes.len() {
                return Err(Failure::Other(anyhow::anyhow!(
                    "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return match value {
                Some(value) => Ok(Answer { text, value }),
                None => Err(Failure::Other(anyhow::anyhow!(
                    "the server answered {status} with a body that is not JSON"
                ))),
            };
        }
        let code = value
            .as_ref()
            .and_then(|v| v["error"].as_str())
            .map_or_else(|| format!("http_{}", status.as_u16()), str::to_owned);
        let message = match (&value, location) {
            (Some(v), _) if v["message"].is_string() => {
                v["message"].as_str().unwrap_or_default().to_owned()
            }
            (_, Some(to)) if status.is_redirection() => {
                format!("the server redirects to {to}; not followed, so the token stays here")
            }
            _ => format!("the server answered {status}{}", snippet(&text)),
        };
        Err(Failure::Server {
            status: status.as_u16(),
            denial: value.as_ref().is_some_and(|v| v["denial"].is_string()),
            body: value.is_some().then_some(text),
            code,
            message,
        })
    }
}

/// The first line of a body that is not the API's JSON (a proxy's error page).
fn snippet(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if line.is_empty() {
        return String::new();
    }
    let short: String = line.trim().chars().take(120).collect();
    format!(": {short}")
}

/// Accepts an absolute http(s) URL with a host and no credentials (they would
/// become a second Authorization header and show in error messages).
fn parse_server(text: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| Failure::Usage(format!("--server {text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Failure::Usage(format!(
            "--server must be an http or https URL, not {:?}",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Failure::Usage("--server has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Failure::Usage(
            "--server must not hold credentials: use --token-file".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Failure::Usage(
            "--server must not have a query or fragment".into(),
        ));
    }
    Ok(url)
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The token, in this order: `--token`, `--token-file`, `CONTROL_PLANE_TOKEN`,
/// `CONTROL_PLANE_TOKEN_FILE`. The environment is read here rather than by clap
/// so that a flag always beats a variable, whichever kind each one is.
fn read_token(args: &ConnArgs) -> Result<String> {
    let from_file = |path: &std::path::Path| -> Result<String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::Other(anyhow::anyhow!(
                "reading the token file {}: {e}",
                path.display()
            ))
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(Failure::Usage(format!(
                "the token file {} is empty",
                path.display()
            )));
        }
        Ok(token.to_owned())
    };
    if let Some(token) = &args.token {
        return Ok(token.trim().to_owned());
    }
    if let Some(path) = &args.token_file {
        return from_file(path);
    }
    if let Some(token) = std::env::var("CONTROL_PLANE_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(token.trim().to_owned());
    }
    if let Some(path) = std::env::var_os("CONTROL_PLANE_TOKEN_FILE").filter(|p| !p.is_empty()) {
        return from_file(std::path::Path::new(&path));
    }
    Err(Failure::Usage(
        "no API token: give --token-file PATH (or CONTROL_PLANE_TOKEN_FILE, CONTROL_PLANE_TOKEN, --token)"
            .into(),
    ))
}

fn unreachable(e: reqwest::Error) -> Failure {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the exchange failed"
    };
    let url = e.url().map(|u| format!(" to {u}")).unwrap_or_default();
    // reqwest's own message repeats the URL; its causes say what went wrong.
    let cause = std::error::Error::source(&e).map_or_else(|| e.to_string(), describe);
    Failure::Unreachable(format!("{what}{url}: {cause}"))
}

/// The error and its causes on one line ("Connection refused" is what helps).
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

    fn server(status: u16, denial: bool) -> Failure {
        Failure::Server {
            status,
            code: "x".into(),
            message: "y".into(),
            body: None,
            denial,
        }
    }

    #[test]
    fn exit_codes() {
        for (status, denial, code) in [
            (500, false, 3),
            (502, false, 3),
            (401, false, 5),
            (403, false, 5),
            (403, true, 7),
            (404, false, 6),
            (409, false, 7),
            (422, false, 7),
            (400, false, 8),
            (413, false, 8),
            (429, false, 8),
            (302, false, 1),
        ] {
            assert_eq!(server(status, denial).exit_code(), code, "{status}");
        }
        assert_eq!(Failure::Usage(String::new()).exit_code(), 2);
        assert_eq!(Failure::Unreachable(String::new()).exit_code(), 3);
    }

    #[test]
    fn server_urls() {
        assert!(parse_server("http://127.0.0.1:8080").is_ok());
        for (url, local) in [
            ("http://127.0.0.1:8080", true),
            ("http://[::1]:8080", true),
            ("http://LOCALHOST", true),
            ("http://10.0.0.1", false),
            ("https://licensing.example.com", false),
        ] {
            assert_eq!(is_loopback(&parse_server(url).unwrap()), local, "{url}");
        }
        assert!(parse_server("https://licensing.example.com/base/").is_ok());
        for bad in [
            "127.0.0.1:8080",
            "ftp://x",
            "http://user:pw@x",
            "http://x/?a=b",
            "nonsense",
        ] {
            assert!(matches!(parse_server(bad), Err(Failure::Usage(_))), "{bad}");
        }
    }
}

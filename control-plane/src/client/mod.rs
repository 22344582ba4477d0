//! The admin CLI: `control-plane licenses|signing-keys|audit list|users|settings`
//! drive every admin route of a running control plane over HTTP(S), for
//! operations staff and scripts. Each command is one request (two for
//! `settings set`: read, then write back); `--json` prints the server's answer
//! as it came, otherwise lists are tables and objects `key: value` lines.
//!
//! The routes, bodies and answers are those of `docs/api.md`; this module adds
//! no rule of its own beyond refusing arguments it can tell are wrong before
//! sending anything (an unknown setting, an unreadable file). The connection and
//! the exit codes are in [`conn`], the rendering in [`render`].

mod conn;
mod render;

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
pub use conn::ConnArgs;
use conn::{Answer, Conn, Failure, Result};
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

// ----- arguments -----

#[derive(Args, Debug)]
pub struct LicensesArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: LicensesCommand,
}

#[derive(Subcommand, Debug)]
enum LicensesCommand {
    /// List licenses (one page; see --limit and --cursor)
    List {
        /// Only this status: issued, active, grace, expired, suspended
        #[arg(long)]
        status: Option<String>,
        /// Only this customer (exact name)
        #[arg(long)]
        customer: Option<String>,
        /// Page size, 1 to 500 [server default: 50]
        #[arg(long)]
        limit: Option<u32>,
        /// The next_cursor of the previous page
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one license
    Show { id: String },
    /// Issue a license; prints its license key, once
    Issue(IssueArgs),
    /// Revoke: grace for N days, then expired (0: expired at once)
    Revoke {
        id: String,
        /// Grace days, 0 to 365 [default: the license's or the settings' default_grace_days]
        #[arg(long)]
        grace_days: Option<u32>,
    },
    /// Undo a revoke: grace or expired back to active
    Reinstate { id: String },
    /// Move the license to replacement hardware
    Rebind(RebindArgs),
    /// Replace a leaked license key; prints the new key, once
    Regenerate { id: String },
    /// Show the current license key (audited)
    Reveal { id: String },
    /// Suspend (subscription lapsed)
    Suspend { id: String },
    /// Restore a suspended license (subscription paid)
    Restore {
        id: String,
        /// A new subscription end (RFC 3339); required when the subscription has ended
        #[arg(long, value_name = "RFC3339")]
        subscription_ends_at: Option<String>,
    },
    /// Run the health sweep now (expire ended grace, suspend ended subscriptions)
    Sweep,
    /// Answer an air-gapped appliance's activation request; prints the response to carry back
    OfflineActivation {
        id: String,
        /// The file `appliance activation-request` wrote, or `-` for standard input
        #[arg(long, value_name = "FILE|-")]
        request: String,
        /// Write the response to this file instead of standard output
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct IssueArgs {
    /// The customer (1 to 128 bytes)
    #[arg(long)]
    customer: String,
    /// The product entitled
    #[arg(long, required_unless_present = "entitlements_json")]
    product: Option<String>,
    /// Features, comma-separated (repeatable)
    #[arg(long = "features", value_delimiter = ',', value_name = "A,B")]
    features: Vec<String>,
    /// A numeric limit, NAME=INTEGER (repeatable)
    #[arg(long = "limit", value_name = "NAME=N", value_parser = parse_limit)]
    limits: Vec<(String, i64)>,
    /// The whole entitlements object as JSON, from a file or `-` for standard input
    #[arg(long, value_name = "FILE|-", conflicts_with_all = ["product", "features", "limits"])]
    entitlements_json: Option<String>,
    /// When the subscription ends (RFC 3339, in the future)
    #[arg(long, value_name = "RFC3339")]
    subscription_ends_at: Option<String>,
    /// Override: the offline window in seconds
    #[arg(long, value_name = "SECS")]
    offline_window_secs: Option<u32>,
    /// Override: the heartbeat interval in seconds
    #[arg(long, value_name = "SECS")]
    heartbeat_interval_secs: Option<u32>,
    /// Override: the grace days of a revoke that names none
    #[arg(long, value_name = "DAYS")]
    default_grace_days: Option<u32>,
    /// Override: `exact` or `k_of_n:K`
    #[arg(long, value_name = "POLICY", value_parser = parse_policy)]
    fingerprint_policy: Option<Value>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["fingerprint", "unbind"])))]
struct RebindArgs {
    id: String,
    /// The new box's components: `appliance fingerprint` output (or its
    /// `components` object) from a file, or `-` for standard input
    #[arg(long, value_name = "FILE|-")]
    fingerprint: Option<String>,
    /// Unbind: whichever box activates next binds
    #[arg(long)]
    unbind: bool,
}

#[derive(Args, Debug)]
pub struct SigningKeysArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: SigningKeysCommand,
}

#[derive(Subcommand, Debug)]
enum SigningKeysCommand {
    /// List root and signing keys
    List,
    /// Create a pending signing key (certified now by the online root, unless --offline)
    Create {
        /// Leave it uncertified, to certify its public key offline with `keys certify`
        #[arg(long)]
        offline: bool,
    },
    /// Attach a certificate chain made offline (`keys certify`) to a pending key
    AttachCertificate {
        /// The key id (one may start with `-`)
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// The certificate file (tokens separated by newlines, pinned-root side
        /// first, or a JSON array of them), or `-` for standard input
        #[arg(long, value_name = "FILE|-")]
        certificate: String,
    },
    /// Make a pending, certified key the one that signs (the active one is retired)
    Activate {
        /// The key id (one may start with `-`)
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Withdraw a pending key
    Retire {
        /// The key id (one may start with `-`)
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Revoke a pending or retired key for good (appliances learn it)
    Revoke {
        /// The key id (one may start with `-`)
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Args, Debug)]
pub struct AuditListArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Only records about this target: a license id (staff may), or a user id,
    /// a key id (which may start with `-`), `settings` (super_admin)
    #[arg(long, allow_hyphen_values = true)]
    target: Option<String>,
    /// Only this action (license.revoke, settings.update...)
    #[arg(long)]
    action: Option<String>,
    /// Only records at or after this time (RFC 3339)
    #[arg(long, value_name = "RFC3339")]
    from: Option<String>,
    /// Only records before this time (RFC 3339)
    #[arg(long, value_name = "RFC3339")]
    until: Option<String>,
    /// Page size, 1 to 1000 [server default: 100]
    #[arg(long)]
    limit: Option<u32>,
    /// The next_cursor of the previous page
    #[arg(long)]
    cursor: Option<u64>,
}

#[derive(Args, Debug)]
pub struct UsersArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Subcommand, Debug)]
enum UsersCommand {
    /// List users
    List,
    /// Create a user; prints its API token, once
    Create {
        /// The user's name (1 to 128 bytes)
        #[arg(long)]
        name: String,
        /// onboarding, support, super_admin or customer
        #[arg(long)]
        role: String,
        /// The customer (required for the customer role, refused for the others)
        #[arg(long)]
        customer: Option<String>,
        /// A file holding the user's console password (12 to 256 characters);
        /// without it the user has API access only
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
    },
    /// Set a user's console password (also lifts a sign-in lockout)
    SetPassword {
        /// The user's id (usr_...)
        id: String,
        /// A file holding the new password (12 to 256 characters)
        #[arg(long)]
        password_file: std::path::PathBuf,
    },
}

/// A password from a file: its first line, without the line ending.
fn read_password(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::Other(anyhow::anyhow!(
            "reading the password file {}: {e}",
            path.display()
        ))
    })?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        return Err(Failure::Usage(format!(
            "the password file {} is empty",
            path.display()
        )));
    }
    Ok(password)
}

#[derive(Args, Debug)]
pub struct SettingsArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: SettingsCommand,
}

#[derive(Subcommand, Debug)]
enum SettingsCommand {
    /// Show the fleet-wide settings
    Show,
    /// Change some settings: reads them, changes the named keys, writes them back
    #[command(after_help = SETTINGS_HELP)]
    Set {
        /// KEY=VALUE, one or more
        #[arg(required = true, value_name = "KEY=VALUE")]
        changes: Vec<String>,
    },
}

const SETTINGS_HELP: &str = "Keys: offline_window_secs, heartbeat_interval_secs, default_grace_days, \
clock_skew_tolerance_secs, airgap_offline_window_secs (whole numbers), fingerprint_policy \
(exact, k_of_n:K, or its JSON object). Bounds are checked by the server (docs/api.md \"Settings\").";

/// The settings `PUT /settings` takes; any other key is refused before sending.
const SETTING_KEYS: [&str; 6] = [
    "offline_window_secs",
    "heartbeat_interval_secs",
    "default_grace_days",
    "fingerprint_policy",
    "clock_skew_tolerance_secs",
    "airgap_offline_window_secs",
];

fn parse_limit(text: &str) -> std::result::Result<(String, i64), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=INTEGER"))?;
    let value = value
        .trim()
        .parse::<i64>()
        .map_err(|_| format!("the limit {name:?} must be a whole number, not {value:?}"))?;
    Ok((name.trim().to_owned(), value))
}

/// `exact`, `k_of_n:K` (or `k-of-n:K`), or the policy's JSON object.
fn parse_policy(text: &str) -> std::result::Result<Value, String> {
    let text = text.trim();
    if text == "exact" {
        return Ok(json!({"mode": "exact"}));
    }
    if let Some(k) = text
        .strip_prefix("k_of_n:")
        .or_else(|| text.strip_prefix("k-of-n:"))
    {
        let k: u32 = k
            .trim()
            .parse()
            .map_err(|_| format!("k in {text:?} must be a whole number"))?;
        return Ok(json!({"mode": "k_of_n", "k": k}));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(format!(
            "{text:?} is not a fingerprint policy: exact, k_of_n:K, or a JSON object"
        )),
    }
}

// ----- dispatch -----

/// Runs one client command: prints its answer (or the failure) and returns the
/// exit code.
fn finish(json: bool, result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if json {
                println!("{}", failure.json());
            }
            eprintln!("control-plane: {}", failure.describe());
            ExitCode::from(failure.exit_code())
        }
    }
}

pub async fn licenses(args: LicensesArgs) -> ExitCode {
    let json = args.conn.json;
    finish(json, licenses_inner(args).await)
}

pub async fn signing_keys(args: SigningKeysArgs) -> ExitCode {
    let json = args.conn.json;
    finish(json, signing_keys_inner(args).await)
}

pub async fn audit_list(args: AuditListArgs) -> ExitCode {
    let json = args.conn.json;
    finish(json, audit_inner(args).await)
}

pub async fn users(args: UsersArgs) -> ExitCode {
    let json = args.conn.json;
    finish(json, users_inner(args).await)
}

pub async fn settings(args: SettingsArgs) -> ExitCode {
    let json = args.conn.json;
    finish(json, settings_inner(args).await)
}

/// Prints an answer: as it came with `--json`, else through `human`.
fn print(json: bool, answer: &Answer, human: impl FnOnce(&Value) -> String) -> Result<()> {
    let text = if json {
        format!("{}\n", answer.text.trim_end())
    } else {
        human(&answer.value)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to standard output")?;
    Ok(())
}

/// Reads a file, or standard input for `-`.
fn read_input(arg: &str, what: &str) -> Result<Vec<u8>> {
    if arg == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)
            .with_context(|| format!("reading the {what} from standard input"))?;
        Ok(bytes)
    } else {
        Ok(std::fs::read(arg).with_context(|| format!("reading the {what} from {arg}"))?)
    }
}

fn read_json(arg: &str, what: &str) -> Result<Value> {
    let bytes = read_input(arg, what)?;
    Ok(serde_json::from_slice(&bytes).with_context(|| format!("the {what} is not JSON"))?)
}

fn body(value: &Value) -> Option<Vec<u8>> {
    Some(value.to_string().into_bytes())
}

/// Query parameters, leaving out those not given.
fn query(pairs: &[(&'static str, Option<String>)]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (*k, v)))
        .collect()
}

/// The order of a license's `key: value` lines (the rest follow by name).
const LICENSE_LEAD: [&str; 6] = [
    "id",
    "customer",
    "status",
    "grace_expires_at",
    "subscription_ends_at",
    "product",
];

fn license_fields(v: &Value) -> String {
    render::fields(v, &LICENSE_LEAD, &["binding.components"])
}

/// A license, then its key and the server's reminder that it shows once.
fn with_key(v: &Value) -> String {
    let mut out = license_fields(&v["license"]);
    out.push_str(&format!(
        "license_key: {}\n",
        render::cell(&v["license_key"])
    ));
    if let Some(note) = v["note"].as_str() {
        eprintln!("control-plane: note: {note}");
    }
    out
}

/// Says on standard error that there is another page, and how to get it.
fn more(v: &Value) {
    if !v["next_cursor"].is_null() {
        eprintln!(
            "control-plane: more: --cursor {}",
            render::cell(&v["next_cursor"])
        );
    }
}

async fn licenses_inner(args: LicensesArgs) -> Result<()> {
    let conn = Conn::open(&args.conn)?;
    let json = args.conn.json;
    let post = |id: String, action: &'static str, body: Option<Vec<u8>>| {
        let conn = &conn;
        async move {
            conn.call(Method::POST, &["licenses", &id, action], &[], body)
                .await
        }
    };
    match args.command {
        LicensesCommand::List {
            status,
            customer,
            limit,
            cursor,
        } => {
            let q = query(&[
                ("status", status),
                ("customer", customer),
                ("limit", limit.map(|l| l.to_string())),
                ("cursor", cursor),
            ]);
            let answer = conn.call(Method::GET, &["licenses"], &q, None).await?;
            print(json, &answer, |v| {
                more(v);
                render::list(
                    &v["items"],
                    &[
                        ("ID", &["id"]),
                        ("CUSTOMER", &["customer"]),
                        ("STATUS", &["status"]),
                        ("PRODUCT", &["entitlements.product", "product"]),
                        (
                            "LAST HEARTBEAT",
                            &["last_heartbeat.at", "last_heartbeat_at"],
                        ),
                        ("GRACE UNTIL", &["grace_expires_at"]),
                        ("SUBSCRIPTION END", &["subscription_ends_at"]),
                    ],
                )
            })
        }
        LicensesCommand::Show { id } => {
            let answer = conn
                .call(Method::GET, &["licenses", &id], &[], None)
                .await?;
            print(json, &answer, license_fields)
        }
        LicensesCommand::Issue(issue) => {
            let answer = conn
                .call(Method::POST, &["licenses"], &[], body(&issue_body(issue)?))
                .await?;
            print(json, &answer, with_key)
        }
        LicensesCommand::Revoke { id, grace_days } => {
            let mut b = Map::new();
            if let Some(days) = grace_days {
                b.insert("grace_days".into(), json!(days));
            }
            let answer = post(id, "revoke", body(&Value::Object(b))).await?;
            print(json, &answer, license_fields)
        }
        LicensesCommand::Reinstate { id } => {
            print(json, &post(id, "reinstate", None).await?, license_fields)
        }
        LicensesCommand::Suspend { id } => {
            print(json, &post(id, "suspend", None).await?, license_fields)
        }
        LicensesCommand::Restore {
            id,
            subscription_ends_at,
        } => {
            let mut b = Map::new();
            if let Some(end) = subscription_ends_at {
                b.insert("subscription_ends_at".into(), json!(end));
            }
            let answer = post(id, "restore", body(&Value::Object(b))).await?;
            print(json, &answer, license_fields)
        }
        LicensesCommand::Rebind(rebind) => {
            let b = match &rebind.fingerprint {
                Some(file) => json!({"fingerprint": components(file, &rebind.id)?}),
                None => json!({"unbind": true}),
            };
            let answer = post(rebind.id, "rebind", body(&b)).await?;
            print(json, &answer, license_fields)
        }
        LicensesCommand::Regenerate { id } => {
            print(json, &post(id, "regenerate", None).await?, with_key)
        }
        LicensesCommand::Reveal { id } => print(json, &post(id, "reveal", None).await?, |v| {
            render::fields(v, &[], &[])
        }),
        LicensesCommand::Sweep => {
            let answer = conn
                .call(Method::POST, &["licenses", "health", "sweep"], &[], None)
                .await?;
            print(json, &answer, |v| render::fields(v, &[], &[]))
        }
        LicensesCommand::OfflineActivation { id, request, out } => {
            let request = read_input(&request, "activation request")?;
            // Sent as the box wrote it: its signature covers the content.
            let answer = post(id, "offline-activation", Some(request)).await?;
            let text = format!("{}\n", answer.text.trim_end());
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    if json {
                        print(json, &answer, |_| String::new())?;
                    } else {
                        eprintln!(
                            "control-plane: wrote {}: carry it to the appliance (`appliance activation-response {}`)",
                            path.display(),
                            path.display()
                        );
                    }
                    Ok(())
                }
                // The response is the file the box needs, in both modes.
                None => print(true, &answer, |_| String::new()),
            }
        }
    }
}

/// The body of `POST /licenses`.
fn issue_body(args: IssueArgs) -> Result<Value> {
    let entitlements = match &args.entitlements_json {
        Some(file) => read_json(file, "entitlements")?,
        None => {
            let limits: Map<String, Value> = args
                .limits
                .into_iter()
                .map(|(name, n)| (name, json!(n)))
                .collect();
            let features: Vec<String> = args
                .features
                .into_iter()
                .map(|f| f.trim().to_owned())
                .filter(|f| !f.is_empty())
                .collect();
            json!({"product": args.product, "features": features, "limits": limits})
        }
    };
    let mut policy = Map::new();
    for (name, value) in [
        (
            "offline_window_secs",
            args.offline_window_secs.map(Value::from),
        ),
        (
            "heartbeat_interval_secs",
            args.heartbeat_interval_secs.map(Value::from),
        ),
        (
            "default_grace_days",
            args.default_grace_days.map(Value::from),
        ),
        ("fingerprint_policy", args.fingerprint_policy),
    ] {
        if let Some(value) = value {
            policy.insert(name.into(), value);
        }
    }
    let mut b = json!({"customer": args.customer, "entitlements": entitlements});
    if let Some(end) = args.subscription_ends_at {
        b["subscription_ends_at"] = json!(end);
    }
    if !policy.is_empty() {
        b["policy"] = Value::Object(policy);
    }
    Ok(b)
}

/// The components for a rebind: `appliance fingerprint` output as it is, or a
/// bare components object. The components are salted with the license id, so
/// output made for another license is refused here rather than by a box later.
fn components(file: &str, id: &str) -> Result<Value> {
    let v = read_json(file, "fingerprint")?;
    if let Some(for_id) = v["license_id"].as_str()
        && for_id != id
    {
        return Err(Failure::Usage(format!(
            "the fingerprint was read for {for_id}, not {id}: run `appliance fingerprint --license-id {id}` on the new box"
        )));
    }
    match v.get("components") {
        Some(c @ Value::Object(_)) => Ok(c.clone()),
        _ if v.get("license_id").is_none() && v.is_object() => Ok(v),
        _ => Err(Failure::Usage(
            "the fingerprint file has no components object".into(),
        )),
    }
}

async fn signing_keys_inner(args: SigningKeysArgs) -> Result<()> {
    let conn = Conn::open(&args.conn)?;
    let json = args.conn.json;
    let key_fields = |v: &Value| {
        let mut out = render::fields(v, &["kid", "role", "state"], &["chain"]);
        if let Some(chain) = v["chain"].as_array() {
            out.push_str(&format!("chain: {} certificate(s)\n", chain.len()));
        }
        out
    };
    let action = |kid: String, action: &'static str, body: Option<Vec<u8>>| {
        let conn = &conn;
        async move {
            conn.call(Method::POST, &["signing-keys", &kid, action], &[], body)
                .await
        }
    };
    match args.command {
        SigningKeysCommand::List => {
            let answer = conn.call(Method::GET, &["signing-keys"], &[], None).await?;
            print(json, &answer, |v| {
                render::list(
                    &v["items"],
                    &[
                        ("KID", &["kid"]),
                        ("ROLE", &["role"]),
                        ("STATE", &["state"]),
                        ("CERTIFICATE END", &["certificate_expires_at"]),
                        ("LIVE LEASES", &["live_leases"]),
                        ("CREATED", &["created_at"]),
                    ],
                )
            })
        }
        SigningKeysCommand::Create { offline } => {
            let b = offline.then(|| json!({"certify": "offline"}));
            let answer = conn
                .call(
                    Method::POST,
                    &["signing-keys"],
                    &[],
                    b.as_ref().and_then(body),
                )
                .await?;
            print(json, &answer, key_fields)
        }
        SigningKeysCommand::AttachCertificate { kid, certificate } => {
            let chain = certificate_chain(&read_input(&certificate, "certificate")?)?;
            let answer = action(kid, "certificate", body(&json!({ "chain": chain }))).await?;
            print(json, &answer, key_fields)
        }
        SigningKeysCommand::Activate { kid } => {
            print(json, &action(kid, "activate", None).await?, key_fields)
        }
        SigningKeysCommand::Retire { kid } => {
            print(json, &action(kid, "retire", None).await?, key_fields)
        }
        SigningKeysCommand::Revoke { kid } => {
            print(json, &action(kid, "revoke", None).await?, key_fields)
        }
    }
}

/// A certificate file: `keys certify` output (one token, ending in a newline),
/// several tokens one per line (pinned-root side first), or a JSON array of them.
fn certificate_chain(bytes: &[u8]) -> Result<Vec<String>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| anyhow!("the certificate file is not text"))?
        .trim();
    let chain: Vec<String> = if text.starts_with('[') {
        serde_json::from_str(text)
            .context("the certificate file is not a JSON array of certificates")?
    } else {
        text.split_whitespace().map(str::to_owned).collect()
    };
    if chain.is_empty() {
        return Err(Failure::Usage("the certificate file is empty".into()));
    }
    Ok(chain)
}

async fn audit_inner(args: AuditListArgs) -> Result<()> {
    let conn = Conn::open(&args.conn)?;
    let q = query(&[
        ("target", args.target),
        ("action", args.action),
        ("from", args.from),
        ("until", args.until),
        ("limit", args.limit.map(|l| l.to_string())),
        ("cursor", args.cursor.map(|c| c.to_string())),
    ]);
    let answer = conn.call(Method::GET, &["audit"], &q, None).await?;
    print(args.conn.json, &answer, |v| {
        more(v);
        render::list(
            &v["items"],
            &[
                ("SEQ", &["seq"]),
                ("AT", &["at"]),
                ("ACTION", &["action"]),
                ("TARGET", &["target"]),
                ("ACTOR", &["actor_name"]),
                ("IP", &["ip"]),
            ],
        )
    })
}

async fn users_inner(args: UsersArgs) -> Result<()> {
    let conn = Conn::open(&args.conn)?;
    let json = args.conn.json;
    let user_lead = ["id", "name", "role", "customer"];
    match args.command {
        UsersCommand::List => {
            let answer = conn.call(Method::GET, &["users"], &[], None).await?;
            print(json, &answer, |v| {
                render::list(
                    v,
                    &[
                        ("ID", &["id"]),
                        ("NAME", &["name"]),
                        ("ROLE", &["role"]),
                        ("CUSTOMER", &["customer"]),
                        ("CREATED", &["created_at"]),
                        ("DISABLED", &["disabled"]),
                    ],
                )
            })
        }
        UsersCommand::Create {
            name,
            role,
            customer,
            password_file,
        } => {
            let mut b = json!({"name": name, "role": role});
            if let Some(customer) = customer {
                b["customer"] = json!(customer);
            }
            if let Some(path) = password_file {
                b["password"] = json!(read_password(&path)?);
            }
            let answer = conn.call(Method::POST, &["users"], &[], body(&b)).await?;
            print(json, &answer, |v| {
                let mut out = render::fields(&v["user"], &user_lead, &[]);
                out.push_str(&format!("token: {}\n", render::cell(&v["token"])));
                if let Some(note) = v["note"].as_str() {
                    eprintln!("control-plane: note: {note}");
                }
                out
            })
        }
        UsersCommand::SetPassword { id, password_file } => {
            let b = json!({"password": read_password(&password_file)?});
            let answer = conn
                .call(Method::PUT, &["users", &id, "password"], &[], body(&b))
                .await?;
            print(json, &answer, |v| render::fields(v, &user_lead, &[]))
        }
    }
}

async fn settings_inner(args: SettingsArgs) -> Result<()> {
    let json = args.conn.json;
    // Arguments are checked before the token is read or anything is sent.
    let changes = match &args.command {
        SettingsCommand::Show => Vec::new(),
        SettingsCommand::Set { changes } => changes
            .iter()
            .map(|c| parse_setting(c))
            .collect::<Result<Vec<_>>>()?,
    };
    let conn = Conn::open(&args.conn)?;
    let current = conn.call(Method::GET, &["settings"], &[], None).await?;
    let show = |v: &Value| render::fields(v, &SETTING_KEYS, &[]);
    if changes.is_empty() {
        return print(json, &current, show);
    }
    let mut settings = current.value;
    let Value::Object(members) = &mut settings else {
        return Err(anyhow!("GET /settings did not answer an object").into());
    };
    for (key, value) in changes {
        members.insert(key, value);
    }
    let answer = conn
        .call(Method::PUT, &["settings"], &[], body(&settings))
        .await?;
    print(json, &answer, show)
}

/// `KEY=VALUE` into a settings member; `-` may stand for `_` in the key.
fn parse_setting(text: &str) -> Result<(String, Value)> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| Failure::Usage(format!("{text:?} is not KEY=VALUE")))?;
    let key = key.trim().replace('-', "_");
    let value = value.trim();
    if !SETTING_KEYS.contains(&key.as_str()) {
        return Err(Failure::Usage(format!(
            "unknown setting {key:?}; the settings are {}",
            SETTING_KEYS.join(", ")
        )));
    }
    let value =
        if key == "fingerprint_policy" {
            parse_policy(value).map_err(Failure::Usage)?
        } else {
            json!(value.parse::<u64>().map_err(|_| Failure::Usage(format!(
                "{key} must be a whole number, not {value:?}"
            )))?)
        };
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_arguments() {
        assert_eq!(
            parse_setting("default_grace_days=7").unwrap(),
            ("default_grace_days".into(), json!(7))
        );
        assert_eq!(
            parse_setting("fingerprint-policy=k_of_n:2").unwrap(),
            (
                "fingerprint_policy".into(),
                json!({"mode": "k_of_n", "k": 2})
            )
        );
        assert_eq!(
            parse_setting("fingerprint_policy=exact").unwrap().1,
            json!({"mode": "exact"})
        );
        for bad in [
            "nope=1",
            "default_grace_days",
            "default_grace_days=many",
            "default_grace_days=-1",
            "fingerprint_policy=fuzzy",
        ] {
            assert!(
                matches!(parse_setting(bad), Err(Failure::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn certificate_files() {
        assert_eq!(certificate_chain(b"a.b.c\n").unwrap(), vec!["a.b.c"]);
        assert_eq!(
            certificate_chain(b"a.b.c\r\nd.e.f\n").unwrap(),
            vec!["a.b.c", "d.e.f"]
        );
        assert_eq!(
            certificate_chain(br#"["a.b.c", "d.e.f"]"#).unwrap(),
            vec!["a.b.c", "d.e.f"]
        );
        assert!(matches!(certificate_chain(b" \n"), Err(Failure::Usage(_))));
    }

    #[test]
    fn issue_bodies() {
        let args = IssueArgs {
            customer: "acme".into(),
            product: Some("gateway".into()),
            features: vec!["vpn".into(), " ".into(), "ids".into()],
            limits: vec![("seats".into(), 25)],
            entitlements_json: None,
            subscription_ends_at: Some("2030-01-01T00:00:00Z".into()),
            offline_window_secs: None,
            heartbeat_interval_secs: Some(30),
            default_grace_days: None,
            fingerprint_policy: Some(json!({"mode": "exact"})),
        };
        assert_eq!(
            issue_body(args).unwrap(),
            json!({"customer": "acme",
                   "entitlements": {"product": "gateway", "features": ["vpn", "ids"], "limits": {"seats": 25}},
                   "subscription_ends_at": "2030-01-01T00:00:00Z",
                   "policy": {"heartbeat_interval_secs": 30, "fingerprint_policy": {"mode": "exact"}}})
        );
        assert_eq!(parse_limit("seats=25").unwrap(), ("seats".into(), 25));
        assert!(parse_limit("seats").is_err());
        assert!(parse_limit("seats=x").is_err());
    }
}

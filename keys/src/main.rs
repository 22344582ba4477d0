//! `keys`: the command line for the people who hold the root key.
//!
//! Meant for an air-gapped machine: it reads and writes files and standard
//! streams, never the network. Exit codes: 0 success, 1 a token or key was
//! refused, 2 bad usage, 3 any other failure (I/O, passphrase, input).

#![forbid(unsafe_code)]

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use keys::keyfile::{self, KdfParams, KeyRole, Passphrase, SealedKey};
use keys::{
    CertifiedKey, Denial, KeyCert, KeyUse, Lease, PrivateKey, PublicKey, TrustStore, UnixTime,
};
use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "keys", version, about = "Root and signing keys, certificates and token checks for appliance licensing", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Root keys: the keys appliances pin
    #[command(subcommand)]
    Root(RootCommand),
    /// Signing keys: the keys that sign leases and denials
    #[command(subcommand)]
    Signing(SigningCommand),
    /// Certify a public key with a root key (prints a keycert+jwt)
    Certify(CertifyArgs),
    /// Trust files: what appliances pin
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Verify a token against a trust file and print its claims as JSON
    Verify(VerifyArgs),
    /// Decode a token WITHOUT verifying it
    Inspect(InspectArgs),
    /// Print the public part of a sealed key file (no passphrase needed)
    Public(PublicArgs),
}

#[derive(Subcommand)]
enum RootCommand {
    /// Create a new root key, sealed under a passphrase
    Init(NewKeyArgs),
}

#[derive(Subcommand)]
enum SigningCommand {
    /// Create a new signing key, sealed under a passphrase
    New(NewKeyArgs),
}

#[derive(Subcommand)]
enum TrustCommand {
    /// Write the trust file (root public keys as a JWKS, plus revoked kids)
    Export(TrustExportArgs),
}

#[derive(Args)]
struct PassphraseArgs {
    /// Read the passphrase from this file (first line) instead of KEYS_PASSPHRASE or a prompt
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Args)]
struct NewKeyArgs {
    /// Where to write the sealed key file (mode 0600; never overwritten)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

#[derive(Args)]
struct CertifyArgs {
    /// The sealed root key file that signs the certificate
    #[arg(long, value_name = "FILE")]
    root: PathBuf,
    /// The key to certify: a sealed key file (only its public part is read)
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "subject_pub",
        required_unless_present = "subject_pub"
    )]
    subject: Option<PathBuf>,
    /// The key to certify: its base64url public key (which may start with `-`)
    #[arg(long, value_name = "BASE64URL", allow_hyphen_values = true)]
    subject_pub: Option<String>,
    /// What the certified key may sign: `lease` (a signing key) or `root` (a new root)
    #[arg(long, default_value = "lease", value_parser = parse_use)]
    r#use: KeyUse,
    /// Days the certificate is valid
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3660))]
    days: u32,
    /// Issuer name written into the certificate
    #[arg(long, default_value = "licensing-root")]
    issuer: String,
    /// Write the certificate here instead of standard output
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    passphrase: PassphraseArgs,
    /// For `--use root`: the new root's passphrase file (its key signs the proof
    /// of possession) [default: KEYS_SUBJECT_PASSPHRASE, or a prompt]
    #[arg(long, value_name = "FILE")]
    subject_passphrase_file: Option<PathBuf>,
}

#[derive(Args)]
struct TrustExportArgs {
    /// A root to pin, as a sealed key file (only its public part is read); repeatable
    #[arg(long = "root", value_name = "FILE")]
    roots: Vec<PathBuf>,
    /// A root to pin, as a base64url public key; repeatable
    #[arg(
        long = "root-pub",
        value_name = "BASE64URL",
        allow_hyphen_values = true
    )]
    root_pubs: Vec<String>,
    /// A kid to list as revoked; repeatable
    #[arg(long = "revoke", value_name = "KID", allow_hyphen_values = true)]
    revoked: Vec<String>,
    /// Write the trust file here instead of standard output
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct VerifyArgs {
    /// The trust file (from `keys trust export`)
    #[arg(long, value_name = "FILE")]
    trust: PathBuf,
    /// The signing key's certificate (for leases and denials); repeat for a chain, root side first
    #[arg(long = "cert", value_name = "FILE")]
    certs: Vec<PathBuf>,
    /// Verify as of this time (RFC 3339) instead of now
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    at: Option<UnixTime>,
    /// The token, or `-` to read it from standard input
    token: String,
}

#[derive(Args)]
struct InspectArgs {
    /// The token, or `-` to read it from standard input
    token: String,
}

#[derive(Args)]
struct PublicArgs {
    /// A sealed key file
    key: PathBuf,
}

/// A failure with the exit code it maps to.
enum Failure {
    Refused(keys::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Other(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(e)) => {
            eprintln!("keys: refused ({}): {e}", e.code());
            ExitCode::from(1)
        }
        Err(Failure::Other(e)) => {
            eprintln!("keys: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Root(RootCommand::Init(args)) => new_key(&args, KeyRole::Root)?,
        Command::Signing(SigningCommand::New(args)) => new_key(&args, KeyRole::Signing)?,
        Command::Certify(args) => certify(&args)?,
        Command::Trust(TrustCommand::Export(args)) => trust_export(&args)?,
        Command::Verify(args) => verify(&args)?,
        Command::Inspect(args) => inspect(&args)?,
        Command::Public(args) => {
            let sealed = keyfile::read_key_file(&args.key).context("reading the key file")?;
            print_json(&public_summary(&sealed))?;
        }
    }
    Ok(())
}

fn public_summary(sealed: &SealedKey) -> serde_json::Value {
    serde_json::json!({
        "kid": sealed.kid(),
        "pub": sealed.public_b64(),
        "role": sealed.role(),
    })
}

fn new_key(args: &NewKeyArgs, role: KeyRole) -> Result<()> {
    if args.out.exists() {
        bail!(
            "{} already exists; refusing to overwrite a key",
            args.out.display()
        );
    }
    let passphrase = read_passphrase(&args.passphrase, true)?;
    let key = PrivateKey::generate()?;
    let sealed = keyfile::seal(&key, role, &passphrase, KdfParams::STRONG)?;
    keyfile::write_key_file(&args.out, &sealed)
        .with_context(|| format!("writing {}", args.out.display()))?;
    print_json(&public_summary(&sealed))
}

fn certify(args: &CertifyArgs) -> Result<()> {
    let subject = match (&args.subject, &args.subject_pub) {
        (Some(path), _) => {
            let sealed = keyfile::read_key_file(path).context("reading the subject key")?;
            PublicKey::from_b64(sealed.public_b64())?
        }
        (None, Some(text)) => PublicKey::from_b64(text.trim()).context("the subject public key")?,
        (None, None) => bail!("give --subject FILE or --subject-pub BASE64URL"),
    };
    let sealed_root = keyfile::read_key_file(&args.root).context("reading the root key")?;
    if sealed_root.role() != KeyRole::Root {
        bail!(
            "{} is a {:?} key, not a root key",
            args.root.display(),
            sealed_root.role()
        );
    }
    let passphrase = read_passphrase(&args.passphrase, false)?;
    let root = keyfile::open(&sealed_root, &passphrase).context("opening the root key")?;
    let now = UnixTime::now();
    if args.r#use == KeyUse::Root {
        // A root rotation needs the new root's own signature too.
        let Some(path) = &args.subject else {
            bail!(
                "--use root needs --subject NEW_ROOT_KEY_FILE: the new root signs a proof of possession"
            );
        };
        let sealed = keyfile::read_key_file(path).context("reading the new root key")?;
        let subject_passphrase = match (
            &args.subject_passphrase_file,
            std::env::var("KEYS_SUBJECT_PASSPHRASE"),
        ) {
            (Some(file), _) => read_passphrase(
                &PassphraseArgs {
                    passphrase_file: Some(file.clone()),
                },
                false,
            )?,
            (None, Ok(text)) => non_empty(text)?,
            (None, Err(_)) => read_passphrase(
                &PassphraseArgs {
                    passphrase_file: None,
                },
                false,
            )?,
        };
        let new_root =
            keyfile::open(&sealed, &subject_passphrase).context("opening the new root key")?;
        let claims = KeyCert {
            iss: args.issuer.clone(),
            iat: now,
            nbf: now,
            exp: now.plus(i64::from(args.days) * 86_400),
            jti: random_id()?,
            kid: String::new(),
            public: String::new(),
            key_use: KeyUse::Root,
            pop: None,
        };
        let token = keys::certify_root(&root, &new_root, claims)?;
        return write_output(args.out.as_deref(), &token);
    }
    let claims = KeyCert {
        iss: args.issuer.clone(),
        iat: now,
        nbf: now,
        exp: now.plus(i64::from(args.days) * 86_400),
        jti: random_id()?,
        kid: subject.kid().to_string(),
        public: subject.to_b64(),
        key_use: args.r#use,
        pop: None,
    };
    let token = keys::sign(&root, &claims)?;
    write_output(args.out.as_deref(), &token)
}

fn trust_export(args: &TrustExportArgs) -> Result<()> {
    let mut roots = Vec::new();
    for path in &args.roots {
        let sealed =
            keyfile::read_key_file(path).with_context(|| format!("reading {}", path.display()))?;
        if sealed.role() != KeyRole::Root {
            bail!(
                "{} is a {:?} key, not a root key",
                path.display(),
                sealed.role()
            );
        }
        roots.push(PublicKey::from_b64(sealed.public_b64())?);
    }
    for text in &args.root_pubs {
        roots.push(PublicKey::from_b64(text.trim()).context("a --root-pub key")?);
    }
    if roots.is_empty() {
        bail!("give at least one --root FILE or --root-pub BASE64URL");
    }
    let mut store = TrustStore::new(roots);
    for kid in &args.revoked {
        store.revoke(keys::Kid::new(kid.trim()));
    }
    let json = serde_json::to_string_pretty(&store.to_file())?;
    write_output(args.out.as_deref(), &json)
}

fn verify(args: &VerifyArgs) -> Result<(), Failure> {
    let trust_json = std::fs::read_to_string(&args.trust)
        .with_context(|| format!("reading {}", args.trust.display()))?;
    let trust = TrustStore::from_json(&trust_json).map_err(Failure::Refused)?;
    let token = read_token(&args.token)?;
    let now = args.at.unwrap_or_else(UnixTime::now);
    let certs = args
        .certs
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .with_context(|| format!("reading {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    // The header's typ says which kind to verify as; each kind's verifier then
    // checks typ again, so this choice cannot make one kind pass for another.
    let typ = keys::inspect(&token)
        .map_err(Failure::Refused)?
        .header
        .get("typ")
        .and_then(|t| t.as_str().map(str::to_owned))
        .unwrap_or_default();
    let claims = if typ == <KeyCert as keys::TokenClaims>::TYP && certs.is_empty() {
        let certified = trust
            .verify_cert_at(&token, now)
            .map_err(Failure::Refused)?;
        serde_json::to_value(certified.cert().claims()).map_err(anyhow::Error::from)?
    } else {
        if certs.is_empty() {
            return Err(Failure::Other(anyhow!(
                "a {typ} token needs its signing key's certificate: --cert FILE"
            )));
        }
        let chain: Vec<&str> = certs.iter().map(String::as_str).collect();
        let signer = trust
            .verify_chain_at(&chain, now)
            .map_err(Failure::Refused)?;
        verified_claims(&trust, &typ, &token, &signer, now)?
    };
    print_json(&claims)?;
    Ok(())
}

fn verified_claims(
    trust: &TrustStore,
    typ: &str,
    token: &str,
    signer: &CertifiedKey,
    now: UnixTime,
) -> Result<serde_json::Value, Failure> {
    let value = if typ == <Denial as keys::TokenClaims>::TYP {
        serde_json::to_value(
            trust
                .verify_at::<Denial>(token, signer, now)
                .map_err(Failure::Refused)?
                .claims(),
        )
    } else {
        // Anything else is verified as a lease, which refuses a wrong typ.
        serde_json::to_value(
            trust
                .verify_at::<Lease>(token, signer, now)
                .map_err(Failure::Refused)?
                .claims(),
        )
    };
    value.map_err(|e| Failure::Other(e.into()))
}

fn inspect(args: &InspectArgs) -> Result<(), Failure> {
    let token = read_token(&args.token)?;
    let decoded = keys::inspect(&token).map_err(Failure::Refused)?;
    print_json(&serde_json::json!({
        "verified": false,
        "warning": "UNVERIFIED: decoded without checking the signature, the trust chain or the dates",
        "header": decoded.header,
        "claims": decoded.claims,
    }))?;
    Ok(())
}

fn read_token(arg: &str) -> Result<String> {
    let text = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .take(keys::MAX_TOKEN_LEN as u64 + 2)
            .read_to_string(&mut text)
            .context("reading the token from standard input")?;
        text
    } else {
        arg.to_owned()
    };
    Ok(text.trim().to_owned())
}

fn read_passphrase(args: &PassphraseArgs, confirm: bool) -> Result<Passphrase> {
    if let Some(path) = &args.passphrase_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let line = text.lines().next().unwrap_or_default();
        return non_empty(line.to_owned());
    }
    if let Ok(text) = std::env::var("KEYS_PASSPHRASE") {
        return non_empty(text);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase: set KEYS_PASSPHRASE, pass --passphrase-file, or run on a terminal");
    }
    let first = rpassword::prompt_password("passphrase: ").context("reading the passphrase")?;
    if confirm {
        let second =
            rpassword::prompt_password("passphrase again: ").context("reading the passphrase")?;
        if first != second {
            bail!("the passphrases differ");
        }
    }
    non_empty(first)
}

fn non_empty(text: String) -> Result<Passphrase> {
    if text.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(Passphrase::new(text.into_bytes()))
}

fn random_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| anyhow!("the random number generator failed"))?;
    Ok(keys::b64::encode(bytes))
}

fn write_output(path: Option<&Path>, text: &str) -> Result<()> {
    match path {
        Some(path) => std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display())),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn parse_use(text: &str) -> Result<KeyUse, String> {
    match text {
        "lease" => Ok(KeyUse::Lease),
        "root" => Ok(KeyUse::Root),
        other => Err(format!("{other:?} is not a key use (lease, root)")),
    }
}

fn parse_rfc3339(text: &str) -> Result<UnixTime, String> {
    UnixTime::parse_rfc3339(text).ok_or_else(|| format!("{text:?} is not an RFC 3339 time"))
}

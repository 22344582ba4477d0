//! Configuration: command-line flags, then `CONTROL_PLANE_*` environment
//! variables, then a TOML file (`--config`), then defaults. docs/operations.md
//! lists every setting.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file's settings; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `postgres://...` or `sled:DIR` (docs/operations.md "PostgreSQL and replicas").
    pub store: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub kek_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub log_format: Option<LogFormat>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub allow_plain_http: Option<bool>,
    pub rate_limits: Option<crate::http::rate_limit::RateLimits>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// Where the key-encryption key lives when not given: beside the data directory,
/// never inside it (`/var/lib/licensing` → `/var/lib/licensing.kek`).
pub fn default_kek_file(data_dir: &Path) -> PathBuf {
    let mut name = data_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "control-plane".into());
    name.push(".kek");
    data_dir.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kek_file_sits_beside_the_data_dir() {
        assert_eq!(
            default_kek_file(Path::new("/var/lib/licensing")),
            PathBuf::from("/var/lib/licensing.kek")
        );
        assert_eq!(
            default_kek_file(Path::new("/var/lib/licensing/")),
            PathBuf::from("/var/lib/licensing.kek")
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("listen = \"127.0.0.1:1\"\nlisen = 1").is_err());
        let c: FileConfig =
            toml::from_str("listen = \"127.0.0.1:8080\"\nlog_format = \"json\"").unwrap();
        assert_eq!(c.log_format, Some(LogFormat::Json));
        let c: FileConfig = toml::from_str("[rate_limits]\nheartbeats_per_minute = 0").unwrap();
        let limits = c.rate_limits.unwrap();
        assert_eq!(limits.heartbeats_per_minute, 0);
        assert_eq!(limits.activations_per_minute, 60);
        assert!(toml::from_str::<FileConfig>("[rate_limits]\nheartbeat_per_minute = 1").is_err());
    }
}

//! The `control-plane` binary's offline commands: `init` (once only, KEK beside
//! the data directory, mode 0600) and `audit verify`.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_control-plane"))
        .args(args)
        .current_dir(dir)
        .env_remove("CONTROL_PLANE_KEK")
        .env_remove("CONTROL_PLANE_DATA_DIR")
        .env_remove("CONTROL_PLANE_KEK_FILE")
        .output()
        .unwrap()
}

#[test]
fn init_creates_once_and_never_clobbers() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["init", "--data-dir", "data", "--json"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(first["admin_token"].as_str().unwrap().starts_with("at_"));
    let kek = dir.path().join("data.kek");
    let kek_before = std::fs::read(&kek).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&kek).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(!dir.path().join("data").join("data.kek").exists());

    let again = run(&["init", "--data-dir", "data", "--json"], dir.path());
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialized"));
    assert!(again.stdout.is_empty());
    assert_eq!(std::fs::read(&kek).unwrap(), kek_before);

    let verify = run(&["audit", "verify", "--data-dir", "data"], dir.path());
    assert!(verify.status.success());
    // init wrote: root key, signing key, the first super_admin.
    assert_eq!(
        String::from_utf8_lossy(&verify.stdout).trim(),
        "audit chain intact: 3 records"
    );
}

#[test]
fn serve_refuses_a_missing_data_dir_and_a_wrong_kek() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["serve", "--data-dir", "nowhere", "--listen", "127.0.0.1:0"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(
        run(&["init", "--data-dir", "data"], dir.path())
            .status
            .success()
    );
    // A different key-encryption key cannot open the signing key.
    let out = Command::new(env!("CARGO_BIN_EXE_control-plane"))
        .args(["serve", "--data-dir", "data", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("CONTROL_PLANE_KEK", keys::b64::encode([7u8; 32]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot open signing key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["serve", "--help"],
        vec!["audit", "verify", "--help"],
    ] {
        let out = run(&args, dir.path());
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"));
    }
    assert_eq!(run(&["bogus"], dir.path()).status.code(), Some(2));
}

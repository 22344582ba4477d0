//! Writes the seed corpus: `cargo run --example seed_corpus --no-default-features`
//! in `fuzz/` fills `fuzz/corpus/{tokens,api}` with one file per seed.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let api = licensing_fuzz::api::Api::open();
    for (target, seeds) in [
        ("tokens", licensing_fuzz::tokens::seeds()),
        ("api", api.seeds()),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        }
    }
    Ok(())
}

//! Replays inputs through the api target in one process, in order, with the
//! control plane's log on stderr (`FUZZ_LOG=error`): state-dependent failures (an input that fails
//! only after others) show their server-side cause here.
//!
//! `cargo run --example replay --no-default-features -- DIR_OR_FILE...`

fn main() {
    let api = licensing_fuzz::api::Api::open();
    let mut files = Vec::new();
    for arg in std::env::args().skip(1) {
        let path = std::path::PathBuf::from(arg);
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(&path)
                .expect("dir")
                .map(|e| e.expect("entry").path())
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path);
        }
    }
    for round in 0..3 {
        for file in &files {
            let input = std::fs::read(file).expect("read");
            eprintln!("round {round}: {}", file.display());
            api.run(&input);
        }
    }
    println!(
        "replayed {} inputs 3 times: {:?}",
        files.len(),
        api.answers()
    );
}

//! The bounded fuzz run of CI (docs/threat-model.md "Fuzzing"): the committed
//! corpus (`fuzz/corpus/`), then a few thousand inputs mutated from it with a
//! fixed seed, through the same functions `cargo fuzz` drives
//! (`licensing_fuzz::tokens::run`, `licensing_fuzz::api::Api::run`). Those
//! functions panic when an input breaks a promise (a panic in `keys` or the
//! control plane, a 5xx, a 4xx without `{error, message}`, a forged or edited
//! token accepted); the failing input is printed as hex so `cargo fuzz run
//! <target> <file>` can replay it.
//!
//! `FUZZ_SMOKE_ITERATIONS` and `FUZZ_SMOKE_SEED` change the run's length and seed.

use licensing_fuzz::{Rng, mutate};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `target` on `input`, naming the input if it panics.
fn check(target: &str, name: &str, input: &[u8], run: impl FnOnce(&[u8])) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(input))) {
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!("fuzz target {target} failed on {name}; input (hex): {hex}");
        resume_unwind(panic);
    }
}

/// The corpus, then `iterations` mutations of it; returns how many inputs ran.
fn replay_and_mutate(target: &str, default_iterations: u64, run: &dyn Fn(&[u8])) -> usize {
    let files = corpus(target);
    assert!(
        files.len() >= 10,
        "{target}: the corpus has {} files",
        files.len()
    );
    for (name, input) in &files {
        check(target, name, input, run);
    }
    let overridden = std::env::var_os("FUZZ_SMOKE_ITERATIONS").is_some();
    let iterations = env_or("FUZZ_SMOKE_ITERATIONS", default_iterations);
    let mut rng = Rng::new(env_or("FUZZ_SMOKE_SEED", 0x5eed_f00d));
    let started = Instant::now();
    for i in 0..iterations {
        let (_, base) = &files[rng.below(files.len())];
        let (_, other) = &files[rng.below(files.len())];
        let mut input = mutate(base, other, &mut rng);
        // Now and then, stack mutations to get further from the seeds.
        while rng.below(3) == 0 {
            input = mutate(&input, other, &mut rng);
        }
        check(target, &format!("mutation {i}"), &input, run);
    }
    // CI's budget: the default run stays well inside it.
    assert!(
        overridden || started.elapsed() < Duration::from_secs(30),
        "{target}: {iterations} inputs took {:?}",
        started.elapsed()
    );
    files.len() + iterations as usize
}

#[test]
fn tokens_corpus_is_the_seeds_and_no_input_breaks_verification() {
    // The committed seeds are exactly what `seeds()` makes (the fixture is
    // deterministic), so a change to the token format shows up here, not as a
    // corpus that silently stopped reaching the verifier.
    let committed = corpus("tokens");
    for (name, seed) in licensing_fuzz::tokens::seeds() {
        let file = format!("seed-{name}");
        let found = committed.iter().find(|(n, _)| *n == file);
        assert_eq!(
            found.map(|(_, bytes)| bytes),
            Some(&seed),
            "fuzz/corpus/tokens/{file} is stale: run `cargo run --example seed_corpus --no-default-features` in fuzz/"
        );
    }
    let ran = replay_and_mutate("tokens", 5_000, &licensing_fuzz::tokens::run);
    eprintln!("fuzz smoke: tokens ran {ran} inputs");
}

#[test]
fn api_bodies_never_answer_5xx_or_bare_errors() {
    let api = licensing_fuzz::api::Api::open();
    let ran = replay_and_mutate("api", 2_000, &|input| api.run(input));
    let [ok, _, client_errors] = api.answers();
    eprintln!("fuzz smoke: api ran {ran} inputs: {ok} 2xx, {client_errors} 4xx");
    // The seeds are valid requests: a harness that got only errors (say, every
    // request refused before its body was read) would prove nothing.
    assert!(ok >= 10, "only {ok} requests succeeded");
    assert!(client_errors >= 100, "only {client_errors} requests failed");
}

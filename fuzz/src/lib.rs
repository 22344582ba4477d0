//! Fuzz targets for the licensing workspace, as plain functions.
//!
//! - [`tokens::run`]: token parsing and verification in `keys` (leases, denials,
//!   certificate chains, `inspect`, trust files, JWKS, device requests, key
//!   blobs), on raw input and on structured mutations of valid signed tokens.
//! - [`api::Api::run`]: arbitrary request bodies on every POST/PUT route of the
//!   control plane's real router.
//!
//! Each panics when an input breaks a promise (a panic inside the code under
//! test, a 5xx, a forged token accepted), which is how libFuzzer and the CI run
//! (`tests/tests/it/fuzz_smoke.rs`) both see a failure. The `fuzz_targets/`
//! binaries are one-line wrappers; [`mutate`] is the small mutator of the CI run.

#![forbid(unsafe_code)]
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod api;
pub mod tokens;

/// A deterministic xorshift generator, so the CI run replays the same inputs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A libFuzzer-like mutation of `input`: a few byte flips, inserts, deletions,
/// duplications and splices with `other`. Used by the bounded CI run, where no
/// coverage-guided fuzzer is available.
pub fn mutate(input: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    const INTERESTING: &[&[u8]] = &[
        b"\0",
        b"\xff",
        b".",
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"=",
        b"\n",
        b"\\u0000",
        b"null",
        b"-1",
        b"1e999",
        b"18446744073709551616",
        b"-9223372036854775808",
        b"\xf0\x9f\x92\xa5",
    ];
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                out.insert(i, rng.next_u64() as u8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                out.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let copy = out[i..i + n].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, copy);
            }
            4 if !other.is_empty() => {
                let i = rng.below(other.len());
                let n = 1 + rng.below((other.len() - i).min(64));
                let at = rng.below(len + 1);
                out.splice(at..at, other[i..i + n].iter().copied());
            }
            5 => {
                let word = INTERESTING[rng.below(INTERESTING.len())];
                let at = rng.below(len + 1);
                out.splice(at..at, word.iter().copied());
            }
            _ if len > 1 => {
                // Keeps the selector byte, cuts the rest.
                out.truncate(1 + rng.below(len - 1));
            }
            _ => out.push(rng.next_u64() as u8),
        }
    }
    out
}

//! `control-plane`: the vendor's licensing server (DESIGN.md "Control plane").
//!
//! Not built yet: issue 3 brings the server. Until then this binary says so and
//! fails, rather than pretending to serve.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!("control-plane: not implemented yet (the server arrives with issue 3)");
    std::process::ExitCode::from(2)
}

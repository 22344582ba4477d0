//! `appliance`: the licensing agent on the customer's box (DESIGN.md "Appliance").
//!
//! Not built yet: issue 4 brings the agent. Until then this binary says so and
//! fails, rather than pretending to enforce anything.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!("appliance: not implemented yet (the agent arrives with issue 4)");
    std::process::ExitCode::from(2)
}

//! The control plane: the vendor's licensing server (DESIGN.md "Control plane").
//!
//! - [`domain`]: pure types and rules (license state machine, settings, roles,
//!   audit chain). No I/O, no clock.
//! - [`store`]: the [`store::Store`] trait and its sled implementation, with
//!   group commit.
//! - [`secrets`]: the key-encryption key and what it seals.
//! - [`clock`]: the injected clock.
//! - [`metrics`]: the Prometheus metrics handle the HTTP layer and the sweep record into.

#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod secrets;
pub mod service;
pub mod store;

//! The fleet simulator's pieces that other crates reuse: the simulated
//! appliances ([`fleet::Device`], their signed activation and heartbeat
//! requests), the load loop and the server processes. The e2e tests drive
//! their appliances with the same [`fleet::Device`] (tests/tests/it/replicas.rs).

pub mod fleet;
pub mod load;
pub mod procs;

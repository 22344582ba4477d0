//! The injected clock. Production uses [`SystemClock`]; tests use [`ManualClock`]
//! and move it by hand. This is the only module that reads the system time.

use keys::UnixTime;
use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> UnixTime;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::now()
    }
}

/// A clock that only moves when told to. Not reachable from the binary's flags or
/// environment: release builds cannot be made to fake time.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at: UnixTime) -> ManualClock {
        ManualClock(AtomicI64::new(at.secs()))
    }

    pub fn set(&self, at: UnixTime) {
        self.0.store(at.secs(), Ordering::SeqCst);
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.0.load(Ordering::SeqCst))
    }
}

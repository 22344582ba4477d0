//! The injected clock: wall time and a monotonic reading. Production uses
//! [`SystemClock`]; tests move a [`ManualClock`] by hand. This is the only module
//! that reads the system time, and nothing in the binary lets anyone set it:
//! an appliance that could be told the time would be a free license extension.

use keys::UnixTime;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Wall-clock time (may be set back or forward by the box's owner).
    fn wall(&self) -> UnixTime;
    /// Time since an arbitrary fixed point, never going backwards.
    fn monotonic(&self) -> Duration;
}

#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn wall(&self) -> UnixTime {
        UnixTime::now()
    }

    fn monotonic(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A clock for tests: wall and monotonic time move only when told to, together
/// ([`ManualClock::advance`]) or the wall clock alone ([`ManualClock::set_wall`],
/// as when someone changes the system time).
#[derive(Debug)]
pub struct ManualClock {
    inner: Mutex<(UnixTime, Duration)>,
}

impl ManualClock {
    pub fn new(wall: UnixTime) -> ManualClock {
        ManualClock {
            inner: Mutex::new((wall, Duration::ZERO)),
        }
    }

    /// Time passes: both clocks move by `secs`.
    pub fn advance(&self, secs: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0 = inner.0.plus(secs);
        inner.1 += Duration::from_secs(secs.max(0).unsigned_abs());
    }

    /// Someone sets the wall clock; monotonic time does not move.
    pub fn set_wall(&self, wall: UnixTime) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0 = wall;
    }
}

impl Clock for ManualClock {
    fn wall(&self) -> UnixTime {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn monotonic(&self) -> Duration {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

//! The clock seam. Real time is read only here; logic receives a `Clock`.

use std::sync::Arc;

/// Time as the node sees it.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock milliseconds since the Unix epoch, for display only (never compared
    /// across machines to make a decision).
    fn wall_ms(&self) -> u64;
    /// Monotonic milliseconds since the clock was created (tokio's clock, so it follows
    /// paused or simulated time).
    fn monotonic_ms(&self) -> u64;
}

/// The real clock.
pub struct SystemClock {
    start: tokio::time::Instant,
}

impl SystemClock {
    #[allow(clippy::disallowed_methods)] // The composition root's one real clock.
    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(SystemClock {
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn wall_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    #[allow(clippy::disallowed_methods)]
    fn monotonic_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

//! openraft's async runtime for consentry: tokio, with a random number source that a
//! simulation can seed.
//!
//! openraft draws its election timeouts from `AsyncRuntime::thread_rng`. In production that
//! is the operating system's entropy, as with `openraft::TokioRuntime`. A deterministic
//! simulation (which runs every simulated node on one thread) calls [`seed_thread_rng`]
//! first, so the same seed elects the same leaders at the same simulated instants.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    static SEEDED: RefCell<Option<SmallRng>> = const { RefCell::new(None) };
}

/// Makes this thread's raft randomness a deterministic stream from `seed`, until
/// [`unseed_thread_rng`]. Only simulations call this.
pub fn seed_thread_rng(seed: u64) {
    SEEDED.with(|rng| *rng.borrow_mut() = Some(SmallRng::seed_from_u64(seed)));
}

/// Returns this thread to entropy-seeded randomness.
pub fn unseed_thread_rng() {
    SEEDED.with(|rng| *rng.borrow_mut() = None);
}

/// The thread's random source: the seeded stream if one is set, otherwise entropy.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRng;

impl ThreadRng {
    fn with<T>(f: impl FnOnce(&mut dyn RngCore) -> T) -> T {
        SEEDED.with(|seeded| match seeded.borrow_mut().as_mut() {
            Some(rng) => f(rng),
            // The production source, chosen here once for every node.
            #[allow(clippy::disallowed_methods)]
            None => f(&mut rand::thread_rng()),
        })
    }
}

impl RngCore for ThreadRng {
    fn next_u32(&mut self) -> u32 {
        Self::with(|r| r.next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        Self::with(|r| r.next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        Self::with(|r| r.fill_bytes(dest));
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        Self::with(|r| r.try_fill_bytes(dest))
    }
}

/// tokio, as `openraft::TokioRuntime`, with [`ThreadRng`] as its random source.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConsentryRuntime;

impl AsyncRuntime for ConsentryRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = tokio::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = tokio::time::Timeout<T>;
    type ThreadLocalRng = ThreadRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        ThreadRng
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (TokioOneShotSender(tx), rx)
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn a_seeded_thread_repeats_its_stream_and_unseeding_leaves_it() {
        let draw = || -> Vec<u64> {
            (0..8)
                .map(|_| ConsentryRuntime::thread_rng().gen_range(1_000..2_000))
                .collect()
        };
        seed_thread_rng(7);
        let first = draw();
        seed_thread_rng(7);
        assert_eq!(draw(), first);
        seed_thread_rng(8);
        assert_ne!(draw(), first);
        unseed_thread_rng();
        assert!(draw().iter().all(|v| (1_000..2_000).contains(v)));
    }
}

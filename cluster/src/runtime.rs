//! openraft's [`AsyncRuntime`] on tokio, with an injectable random number generator.
//!
//! Everything is tokio's (spawn, sleep, timeouts, oneshot), exactly as openraft's own
//! `TokioRuntime`, except [`AsyncRuntime::thread_rng`]: openraft's only randomness is the
//! election timeout, drawn from it once per `Raft::new`. By default the draws come from the
//! operating system's entropy (`rand::thread_rng`, reseeded from the OS). [`seed_rng`] switches
//! the whole process to one seeded stream, so a simulator that runs every node on one thread
//! in a fixed order gets the same election timeouts on every run; [`use_os_entropy`] switches
//! back.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

static SEEDED: Mutex<Option<StdRng>> = Mutex::new(None);

fn seeded() -> std::sync::MutexGuard<'static, Option<StdRng>> {
    // No code panics while holding the lock with the generator half-updated.
    SEEDED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Makes every later draw of [`RaftRng`] in this process come from one stream seeded with
/// `seed`.
pub fn seed_rng(seed: u64) {
    *seeded() = Some(StdRng::seed_from_u64(seed));
}

/// Makes every later draw come from operating-system entropy again (the default).
pub fn use_os_entropy() {
    *seeded() = None;
}

/// The generator openraft draws from: the seeded stream if [`seed_rng`] was called, else the
/// OS-seeded thread generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct RaftRng;

impl RngCore for RaftRng {
    fn next_u32(&mut self) -> u32 {
        match seeded().as_mut() {
            Some(rng) => rng.next_u32(),
            None => rand::thread_rng().next_u32(),
        }
    }

    fn next_u64(&mut self) -> u64 {
        match seeded().as_mut() {
            Some(rng) => rng.next_u64(),
            None => rand::thread_rng().next_u64(),
        }
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        match seeded().as_mut() {
            Some(rng) => rng.fill_bytes(dest),
            None => rand::thread_rng().fill_bytes(dest),
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// openraft's runtime for zcore-cluster: tokio plus [`RaftRng`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RaftRuntime;

impl AsyncRuntime for RaftRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = tokio::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = tokio::time::Timeout<T>;
    type ThreadLocalRng = RaftRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;

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
        RaftRng
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
    use super::*;
    use rand::Rng;

    #[test]
    fn seeded_draws_repeat() {
        seed_rng(42);
        let a: Vec<u64> = (0..4).map(|_| RaftRuntime::thread_rng().r#gen()).collect();
        seed_rng(42);
        let b: Vec<u64> = (0..4).map(|_| RaftRuntime::thread_rng().r#gen()).collect();
        use_os_entropy();
        assert_eq!(a, b);
        let timeout = RaftRuntime::thread_rng().gen_range(150..300u64);
        assert!((150..300).contains(&timeout));
    }
}

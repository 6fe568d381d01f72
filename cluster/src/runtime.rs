//! openraft's [`AsyncRuntime`] on tokio, with an injectable random number generator.
//!
//! Everything is tokio's (spawn, sleep, timeouts, oneshot), exactly as openraft's own
//! `TokioRuntime`, except [`AsyncRuntime::thread_rng`]: openraft's only randomness is the
//! election timeout, drawn from it once per `Raft::new`. By default the draws come from the
//! operating system's entropy (`rand::thread_rng`, reseeded from the OS). [`seed_rng`] switches
//! the **calling thread** to one seeded stream, so a simulator that runs every node on one
//! thread in a fixed order (turmoil does) gets the same election timeouts on every run;
//! [`use_os_entropy`] switches that thread back. The stream is per thread, never shared: two
//! simulations on two threads (cargo runs tests in parallel, a sweep runs one simulation per
//! worker thread) never draw from each other's stream.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Draws from this thread's seeded stream, or from OS entropy if it has none.
fn draw<T>(seeded: impl FnOnce(&mut StdRng) -> T, os: impl FnOnce() -> T) -> T {
    SEEDED.with(|cell| match cell.borrow_mut().as_mut() {
        Some(rng) => seeded(rng),
        None => os(),
    })
}

/// Makes every later draw of [`RaftRng`] on this thread come from one stream seeded with
/// `seed`.
pub fn seed_rng(seed: u64) {
    SEEDED.with(|cell| *cell.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// Makes every later draw on this thread come from operating-system entropy again (the
/// default).
pub fn use_os_entropy() {
    SEEDED.with(|cell| *cell.borrow_mut() = None);
}

/// The generator openraft draws from: this thread's seeded stream if [`seed_rng`] was called
/// on it, else the OS-seeded thread generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct RaftRng;

impl RngCore for RaftRng {
    fn next_u32(&mut self) -> u32 {
        draw(RngCore::next_u32, || rand::thread_rng().next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        draw(RngCore::next_u64, || rand::thread_rng().next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        SEEDED.with(|cell| match cell.borrow_mut().as_mut() {
            Some(rng) => rng.fill_bytes(dest),
            None => rand::thread_rng().fill_bytes(dest),
        });
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Simulator-only fault switches (cargo feature `sim-faults`, off by default; only the
/// simulator enables it). Everything is per thread and off until a simulation turns it on, so
/// a build that has the feature (cargo unifies features across a workspace build) behaves
/// exactly as one without it unless a simulation on that thread asked otherwise.
///
/// - **BUGGIFY** ([`buggify`](sim_faults::buggify)): a few fault points in product code. As in
///   FoundationDB, each site is activated once per run with p = 0.25 when first reached, and
///   an active site then fires with p = 0.25 each time it is reached, all drawn from a seeded
///   stream.
/// - **Negative control** ([`set_lose_votes`](sim_faults::set_lose_votes)): `save_vote`
///   returns before the vote is durable, a planted bug the simulator must catch.
#[cfg(feature = "sim-faults")]
pub mod sim_faults {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::time::Duration;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[derive(Debug)]
    struct Buggify {
        rng: StdRng,
        /// Site → activated in this run.
        sites: BTreeMap<&'static str, bool>,
        /// Site → times fired.
        fired: BTreeMap<&'static str, u64>,
    }

    #[derive(Debug, Default)]
    struct State {
        lose_votes: bool,
        buggify: Option<Buggify>,
    }

    thread_local! {
        static STATE: RefCell<State> = RefCell::new(State::default());
    }

    /// Turns every switch off on this thread (the default).
    pub fn reset() {
        STATE.with(|s| *s.borrow_mut() = State::default());
    }

    /// Negative control: `save_vote` skips durability (writes without syncing).
    pub fn set_lose_votes(on: bool) {
        STATE.with(|s| s.borrow_mut().lose_votes = on);
    }

    /// Whether votes are planted to be lost.
    #[must_use]
    pub fn lose_votes() -> bool {
        STATE.with(|s| s.borrow().lose_votes)
    }

    /// Activates BUGGIFY on this thread, drawing from a stream seeded with `seed`.
    pub fn enable_buggify(seed: u64) {
        STATE.with(|s| {
            s.borrow_mut().buggify = Some(Buggify {
                rng: StdRng::seed_from_u64(seed),
                sites: BTreeMap::new(),
                fired: BTreeMap::new(),
            });
        });
    }

    /// Whether the fault point `site` fires now (always false unless enabled).
    #[must_use]
    pub fn buggify(site: &'static str) -> bool {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let Some(b) = s.buggify.as_mut() else {
                return false;
            };
            let active = match b.sites.get(site) {
                Some(active) => *active,
                None => {
                    let active = b.rng.gen_bool(0.25);
                    b.sites.insert(site, active);
                    active
                }
            };
            let fire = active && b.rng.gen_bool(0.25);
            if fire {
                *b.fired.entry(site).or_insert(0) += 1;
            }
            fire
        })
    }

    /// A delay (1..=200 ms) to inject at `site` if it fires now.
    #[must_use]
    pub fn buggify_delay(site: &'static str) -> Option<Duration> {
        if !buggify(site) {
            return None;
        }
        STATE.with(|s| {
            s.borrow_mut()
                .buggify
                .as_mut()
                .map(|b| Duration::from_millis(b.rng.gen_range(1..=200)))
        })
    }

    /// How often each site fired since BUGGIFY was enabled on this thread.
    #[must_use]
    pub fn fired() -> Vec<(&'static str, u64)> {
        STATE.with(|s| {
            s.borrow()
                .buggify
                .as_ref()
                .map(|b| b.fired.iter().map(|(k, v)| (*k, *v)).collect())
                .unwrap_or_default()
        })
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
        // Another thread never sees this thread's stream.
        let other = std::thread::spawn(|| SEEDED.with(|cell| cell.borrow().is_none()))
            .join()
            .unwrap_or(false);
        use_os_entropy();
        assert_eq!(a, b);
        assert!(other, "a fresh thread starts on OS entropy");
        let timeout = RaftRuntime::thread_rng().gen_range(150..300u64);
        assert!((150..300).contains(&timeout));
    }
}

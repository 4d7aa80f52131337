//! The work queue that schedules reconciles of Applications.
//!
//! One [`Queue`] holds every Application key (`namespace`, `name`) with the time of its next
//! run. [`Queue::run`] takes keys as they come due and runs the reconcile for each, at most
//! `concurrency` at a time, each in its own task, so one slow, failing or panicking app
//! never holds up the others beyond the one slot it occupies. The reconcile's [`Outcome`]
//! decides the next run:
//!
//! | outcome | next run |
//! |---|---|
//! | `Success { requeue_after }` (`spec.interval`) | after `requeue_after`, jittered; the failure count resets |
//! | `Failure { retry_after: Some(d) }` (`spec.retryInterval`) | after `d`, jittered (as Flux does for a failed reconcile) |
//! | `Failure { retry_after: None }` (a transient error: 5xx, 429, timeout, connection) | exponential backoff with jitter, [`Backoff`] (750 ms doubling to 15 min by default) |
//! | `Stop` (suspended, or stalled until the spec changes) | not scheduled; a later [`Queue::add`] starts it again |
//!
//! A failure of either kind counts toward the backoff; only a success resets it. Keys are
//! deduplicated: a key added while already queued runs once (at the earlier of the two
//! times), and a key added while its reconcile is in flight runs once more after it ends,
//! never twice at the same time. [`Queue::add`] is also the immediate trigger, e.g. for a new
//! `lockstep.dev/reconcile-requested-at` annotation or a drift event.
//!
//! All timing uses [`tokio::time`], so tests can run it under paused time.
//!
//! ```no_run
//! use std::time::Duration;
//! use lockstep::controller::queue::{Backoff, Key, Outcome, Queue};
//!
//! async fn reconcile(key: Key) -> Outcome {
//!     // fetch, render, apply, health... then:
//!     Outcome::Success { requeue_after: Duration::from_secs(60) }
//! }
//!
//! # async fn controller() {
//! let queue = Queue::new(4, Backoff::default()); // --concurrency 4
//! // From the Application watch: add on create/update (and on a new
//! // reconcile-requested-at), forget on delete.
//! queue.add(("payments".into(), "payments".into()));
//! let runner = queue.clone();
//! let task = tokio::spawn(async move { runner.run(reconcile).await });
//! // On SIGTERM:
//! queue.shutdown();
//! let _ = task.await;
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

/// An Application's key: (namespace, name).
pub type Key = (String, String);

/// What one reconcile asks of the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Reconciled; run again after `requeue_after` (the Application's `interval`).
    Success { requeue_after: Duration },
    /// Failed. `Some(d)`: retry after `d` (the Application's `retryInterval`); `None`: a
    /// transient error, retry after the exponential backoff for this key.
    Failure { retry_after: Option<Duration> },
    /// Do not schedule again (`spec.suspend`, or stalled until its spec changes); the
    /// failure count resets. The Application watch adds the key again on its next change.
    Stop,
}

/// Per-key exponential backoff for transient failures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Cap of the doubling delay.
    pub max: Duration,
    /// Relative jitter applied to every delay the queue schedules (0.1 = ±10%), so that many
    /// Applications with the same interval do not reconcile in lockstep with each other.
    pub jitter: f64,
}

impl Default for Backoff {
    /// 750 ms doubling to 15 min, ±10% jitter (Flux's controller-runtime defaults for
    /// the backoff).
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(750),
            max: Duration::from_secs(15 * 60),
            jitter: 0.1,
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 = the first), before jitter:
    /// `base * 2^(failures-1)`, capped at `max`.
    pub fn delay(&self, failures: u32) -> Duration {
        let mut d = self.base;
        for _ in 1..failures {
            d = d.saturating_mul(2);
            if d >= self.max {
                break;
            }
        }
        d.min(self.max)
    }

    /// `d` scaled by a random factor in `[1 - jitter, 1 + jitter]`.
    pub fn jittered(&self, d: Duration) -> Duration {
        let j = self.jitter.min(1.0);
        // Also catches a NaN jitter.
        if j.is_nan() || j <= 0.0 {
            return d;
        }
        let factor = 1.0 - j + 2.0 * j * random_unit();
        Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(d)
    }
}

/// A uniform random number in `[0, 1)`; 0.5 in the unlikely case the system RNG fails (the
/// delay is then simply not jittered).
fn random_unit() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    match ring::rand::SystemRandom::new().fill(&mut b) {
        Ok(()) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

/// No delay is scheduled further out than this (guards `Instant` arithmetic).
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// The reconcile scheduler. Cheap to clone; clones share one queue.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    wake: Notify,
    stop: watch::Sender<bool>,
    running: AtomicBool,
    concurrency: usize,
    backoff: Backoff,
}

#[derive(Default)]
struct State {
    /// Due keys by (time, insertion order): FIFO among keys due at the same time.
    due: BTreeMap<(Instant, u64), Key>,
    when: HashMap<Key, (Instant, u64)>,
    seq: u64,
    in_flight: HashSet<Key>,
    failures: HashMap<Key, u32>,
    /// Keys forgotten while their reconcile was in flight: its outcome is dropped.
    forgotten: HashSet<Key>,
}

impl State {
    /// Queue `key` at `at`, or keep its existing time if that is earlier.
    fn schedule(&mut self, key: Key, at: Instant) {
        if let Some(&(old, seq)) = self.when.get(&key) {
            if old <= at {
                return;
            }
            self.due.remove(&(old, seq));
        }
        self.seq += 1;
        self.due.insert((at, self.seq), key.clone());
        self.when.insert(key, (at, self.seq));
    }

    fn unschedule(&mut self, key: &Key) {
        if let Some(slot) = self.when.remove(key) {
            self.due.remove(&slot);
        }
    }

    /// Takes up to `room` keys due by `now` whose reconcile is not in flight, earliest
    /// first, and marks them in flight. Also returns when the next waiting key comes due
    /// (`None` when nothing waits, or when there is no room: a finishing task wakes us).
    fn take_ready(&mut self, now: Instant, room: usize) -> (Vec<Key>, Option<Instant>) {
        let mut ready = Vec::new();
        let mut next = None;
        for (&(at, _), key) in &self.due {
            if self.in_flight.contains(key) {
                continue;
            }
            if at > now {
                next = Some(at);
                break;
            }
            if ready.len() >= room {
                break;
            }
            ready.push(key.clone());
        }
        for key in &ready {
            self.unschedule(key);
            self.in_flight.insert(key.clone());
        }
        (ready, next)
    }
}

impl Queue {
    /// A queue running at most `concurrency` reconciles at once (at least 1).
    pub fn new(concurrency: usize, backoff: Backoff) -> Queue {
        Queue {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                stop: watch::Sender::new(false),
                running: AtomicBool::new(false),
                concurrency: concurrency.max(1),
                backoff,
            }),
        }
    }

    /// Queue `key` to run now. Deduplicated: if it is already queued it runs once; if its
    /// reconcile is in flight it runs once more right after.
    pub fn add(&self, key: Key) {
        self.add_at(key, Instant::now());
    }

    /// Queue `key` to run after `after`, unless it is already queued to run sooner.
    pub fn add_after(&self, key: Key, after: Duration) {
        self.add_at(key, Instant::now() + after.min(FAR));
    }

    fn add_at(&self, key: Key, at: Instant) {
        {
            let mut st = self.lock();
            st.forgotten.remove(&key);
            st.schedule(key, at);
        }
        self.inner.wake.notify_one();
    }

    /// Drop `key`'s schedule and backoff (the Application was deleted). A reconcile of it
    /// in flight finishes, but its outcome schedules nothing.
    pub fn forget(&self, key: &Key) {
        let mut st = self.lock();
        st.unschedule(key);
        st.failures.remove(key);
        if st.in_flight.contains(key) {
            st.forgotten.insert(key.clone());
        }
    }

    /// Consecutive failures of `key` since its last success (0 when none).
    pub fn failures(&self, key: &Key) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// How many keys wait for their next run, and how many reconciles are in flight (for
    /// metrics).
    pub fn depth(&self) -> (usize, usize) {
        let st = self.lock();
        (st.when.len(), st.in_flight.len())
    }

    /// Ask [`Queue::run`] to stop: it starts nothing new, waits for the reconciles in
    /// flight (each bounded by its Application's `timeout`), and returns. Final: a later
    /// `run` on this queue returns at once.
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Runs until [`Queue::shutdown`]: takes due keys, runs `work(key)` in its own task with
    /// at most `concurrency` in flight, and schedules the next run from its [`Outcome`]. A
    /// reconcile that panics counts as a transient failure. Call it once per queue; a
    /// second concurrent call returns at once.
    pub async fn run<F, Fut>(&self, work: F)
    where
        F: Fn(Key) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        if self.inner.running.swap(true, Ordering::SeqCst) {
            tracing::warn!("the reconcile queue is already running; ignoring a second run");
            return;
        }
        let mut stop = self.inner.stop.subscribe();
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut keys: HashMap<Id, Key> = HashMap::new();
        while !*stop.borrow_and_update() {
            let room = self.inner.concurrency.saturating_sub(tasks.len());
            let (ready, next) = self.lock().take_ready(Instant::now(), room);
            for key in ready {
                let handle = tasks.spawn(work(key.clone()));
                keys.insert(handle.id(), key);
            }
            let sleep = tokio::time::sleep_until(next.unwrap_or_else(Instant::now));
            tokio::select! {
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    self.finish(&mut keys, done);
                }
                () = self.inner.wake.notified() => {}
                () = sleep, if next.is_some() => {}
                _ = stop.changed() => {}
            }
        }
        while let Some(done) = tasks.join_next_with_id().await {
            self.finish(&mut keys, done);
        }
        self.inner.running.store(false, Ordering::SeqCst);
    }

    fn finish(
        &self,
        keys: &mut HashMap<Id, Key>,
        done: Result<(Id, Outcome), tokio::task::JoinError>,
    ) {
        let (id, outcome) = match done {
            Ok((id, outcome)) => (id, outcome),
            Err(e) => {
                let id = e.id();
                if let Some((ns, name)) = keys.get(&id) {
                    tracing::error!(namespace = %ns, name = %name, "reconcile panicked; retrying with backoff");
                }
                (id, Outcome::Failure { retry_after: None })
            }
        };
        let Some(key) = keys.remove(&id) else {
            return;
        };
        let backoff = self.inner.backoff;
        let now = Instant::now();
        let mut st = self.lock();
        st.in_flight.remove(&key);
        if st.forgotten.remove(&key) {
            return;
        }
        match outcome {
            Outcome::Success { requeue_after } => {
                st.failures.remove(&key);
                let d = backoff.jittered(requeue_after).min(FAR);
                st.schedule(key, now + d);
            }
            Outcome::Failure { retry_after } => {
                let n = st.failures.entry(key.clone()).or_insert(0);
                *n = n.saturating_add(1);
                let d = retry_after.unwrap_or_else(|| backoff.delay(*n));
                st.schedule(key, now + backoff.jittered(d).min(FAR));
            }
            Outcome::Stop => {
                st.failures.remove(&key);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere (every update is a few
        // map operations), so a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::time::sleep;

    fn key(name: &str) -> Key {
        ("team".to_owned(), name.to_owned())
    }

    fn exact(base_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
            jitter: 0.0,
        }
    }

    /// Starts of each reconcile, by key, in order.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<(String, Instant)>>>);

    impl Log {
        fn record(&self, key: &Key) {
            self.0.lock().unwrap().push((key.1.clone(), Instant::now()));
        }
        fn starts(&self, name: &str) -> Vec<Instant> {
            let log = self.0.lock().unwrap();
            log.iter()
                .filter(|(k, _)| k == name)
                .map(|(_, t)| *t)
                .collect()
        }
    }

    fn gaps(starts: &[Instant]) -> Vec<Duration> {
        starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn near(actual: Duration, expected: Duration) -> bool {
        let diff = actual.abs_diff(expected);
        diff <= Duration::from_millis(2)
    }

    fn spawn_run<F, Fut>(q: &Queue, work: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Key) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let q = q.clone();
        tokio::spawn(async move { q.run(work).await })
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_queued_several_times_runs_once() {
        let q = Queue::new(4, exact(1000, 8000));
        let log = Log::default();
        q.add(key("a"));
        q.add(key("a"));
        q.add_after(key("a"), Duration::from_secs(5));
        q.add(key("b"));
        let l = log.clone();
        let run = spawn_run(&q, move |k| {
            l.record(&k);
            async { Outcome::Stop }
        });
        sleep(Duration::from_secs(60)).await;
        assert_eq!(log.starts("a").len(), 1);
        assert_eq!(log.starts("b").len(), 1);
        assert_eq!(q.depth(), (0, 0));
        q.shutdown();
        run.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_queued_while_running_runs_once_more_after() {
        let q = Queue::new(4, exact(1000, 8000));
        let log = Log::default();
        let (l, now_running) = (log.clone(), Arc::new(AtomicUsize::new(0)));
        let (nr, max_running) = (now_running.clone(), Arc::new(AtomicUsize::new(0)));
        let mr = max_running.clone();
        let run = spawn_run(&q, move |k| {
            l.record(&k);
            let (nr, mr) = (nr.clone(), mr.clone());
            async move {
                let n = nr.fetch_add(1, Ordering::SeqCst) + 1;
                mr.fetch_max(n, Ordering::SeqCst);
                sleep(Duration::from_secs(10)).await;
                nr.fetch_sub(1, Ordering::SeqCst);
                Outcome::Stop
            }
        });
        q.add(key("a"));
        sleep(Duration::from_secs(1)).await;
        assert_eq!(log.starts("a").len(), 1, "the first run has started");
        for _ in 0..3 {
            q.add(key("a"));
        }
        sleep(Duration::from_secs(60)).await;
        let starts = log.starts("a");
        assert_eq!(
            starts.len(),
            2,
            "three adds during the run give one more run"
        );
        assert!(
            starts[1] - starts[0] >= Duration::from_secs(10),
            "the second run waits for the first"
        );
        assert_eq!(max_running.load(Ordering::SeqCst), 1);
        q.shutdown();
        run.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded_and_used() {
        let q = Queue::new(3, exact(1000, 8000));
        let log = Log::default();
        let now_running = Arc::new(AtomicUsize::new(0));
        let max_running = Arc::new(AtomicUsize::new(0));
        let (l, nr, mr) = (log.clone(), now_running.clone(), max_running.clone());
        let t0 = Instant::now();
        for i in 0..10 {
            q.add(key(&format!("app{i}")));
        }
        let run = spawn_run(&q, move |k| {
            l.record(&k);
            let (nr, mr) = (nr.clone(), mr.clone());
            async move {
                let n = nr.fetch_add(1, Ordering::SeqCst) + 1;
                mr.fetch_max(n, Ordering::SeqCst);
                sleep(Duration::from_secs(1)).await;
                nr.fetch_sub(1, Ordering::SeqCst);
                Outcome::Stop
            }
        });
        sleep(Duration::from_secs(30)).await;
        assert_eq!(max_running.load(Ordering::SeqCst), 3);
        let all: Vec<Instant> = (0..10)
            .flat_map(|i| log.starts(&format!("app{i}")))
            .collect();
        assert_eq!(all.len(), 10, "every app ran exactly once");
        // 10 one-second reconciles three at a time: the last starts after 3 s.
        let last = all.iter().max().copied().unwrap();
        assert!(near(last - t0, Duration::from_secs(3)), "{:?}", last - t0);
        q.shutdown();
        run.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_or_panicking_app_does_not_block_the_others() {
        let q = Queue::new(2, exact(1000, 8000));
        let log = Log::default();
        let l = log.clone();
        let run = spawn_run(&q, move |k| {
            l.record(&k);
            async move {
                match k.1.as_str() {
                    "slow" => {
                        sleep(Duration::from_secs(3600)).await;
                        Outcome::Success {
                            requeue_after: Duration::from_secs(1),
                        }
                    }
                    "boom" => panic!("reconcile bug"),
                    _ => {
                        sleep(Duration::from_millis(100)).await;
                        Outcome::Success {
                            requeue_after: Duration::from_secs(1),
                        }
                    }
                }
            }
        });
        q.add(key("slow"));
        q.add(key("boom"));
        q.add(key("fast1"));
        q.add(key("fast2"));
        sleep(Duration::from_secs(20)).await;
        assert_eq!(log.starts("slow").len(), 1);
        for name in ["fast1", "fast2"] {
            let n = log.starts(name).len();
            assert!(n >= 15, "{name} ran {n} times in 20 s next to a stuck app");
        }
        // The panicking app is retried with backoff (1 s, 2 s, 4 s, 8 s: 5 runs in 20 s),
        // not in a hot loop and not dropped.
        let boom = log.starts("boom");
        assert!((4..=6).contains(&boom.len()), "{boom:?}");
        assert!(q.failures(&key("boom")) >= 4);
        q.shutdown();
        // Shutdown waits for the stuck reconcile, as it waits for any in flight.
        run.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_saturated_queue_serves_every_app_in_turn() {
        // 200 apps of one second each, four at a time, every ten seconds: the queue is
        // saturated (a round takes 50 s), so due-time order must share the slots fairly.
        let q = Queue::new(4, exact(1000, 8000));
        let log = Log::default();
        let l = log.clone();
        let run = spawn_run(&q, move |k| {
            l.record(&k);
            async {
                sleep(Duration::from_secs(1)).await;
                Outcome::Success {
                    requeue_after: Duration::from_secs(10),
                }
            }
        });
        for i in 0..200 {
            q.add(key(&format!("app{i}")));
        }
        sleep(Duration::from_secs(500)).await;
        let runs: Vec<usize> = (0..200)
            .map(|i| log.starts(&format!("app{i}")).len())
            .collect();
        let (min, max) = (runs.iter().min().copied(), runs.iter().max().copied());
        assert!(
            min >= Some(9) && max <= Some(11),
            "runs per app {min:?}..{max:?}"
        );
        let total: usize = runs.iter().sum();
        assert!(total >= 4 * 499, "all four slots stayed busy: {total} runs");
        q.shutdown();
        run.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_caps_and_resets_after_success() {
        let q = Queue::new(1, exact(1000, 8000));
        let log = Log::default();
        let attempts = Arc::new(AtomicUsize::new(0));
        let (l, a) = (log.clone(), attempts.clone());
        let run = spawn_run(&q, move |k| {
            l.record(&k);
            let n = a.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0..=4 => Outcome::Failure { retry_after: None },
                    5 => Outcome::Success {
                        requeue_after: Duration::from_secs(100),
                    },
                    6 => Outcome::Failure { retry_after: None },
                    7 | 8 => Outcome::Failure {
                        retry_after: Some(Duration::from_secs(30)),
                    },
                    _ => Outcome::Stop,
                }
            }
        });
        q.add(key("a"));
        sleep(Duration::from_secs(600)).await;
        let got = gaps(&log.starts("a"));
        let want = [1, 2, 4, 8, 8, 100, 1, 30, 30].map(Duration::from_secs);
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(near(*g, w), "gaps {got:?}, expected {want:?}");
        }
        q.shutdown();
        run.await.unwrap();
    }

    #[test]
    fn backoff_delays_and_jitter_bounds() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_millis(750));
        assert_eq!(b.delay(2), Duration::from_millis(1500));
        assert_eq!(b.delay(5), Duration::from_millis(12_000));
        assert_eq!(b.delay(11), Duration::from_secs(768));
        assert_eq!(b.delay(12), Duration::from_secs(15 * 60));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(15 * 60));
        let ten = Duration::from_secs(10);
        let samples: Vec<Duration> = (0..2000).map(|_| b.jittered(ten)).collect();
        let (lo, hi) = (Duration::from_secs(9), Duration::from_secs(11));
        assert!(samples.iter().all(|d| (lo..=hi).contains(d)));
        // Spread over the whole range, not stuck at one value.
        assert!(samples.iter().any(|d| *d < Duration::from_millis(9_500)));
        assert!(samples.iter().any(|d| *d > Duration::from_millis(10_500)));
        let none = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        assert_eq!(none.jittered(ten), ten);
    }

    #[tokio::test(start_paused = true)]
    async fn intervals_are_jittered_within_bounds() {
        let q = Queue::new(
            2,
            Backoff {
                jitter: 0.1,
                ..Backoff::default()
            },
        );
        let log = Log::default();
        let l = log.clone();
        let run = spawn_run(&q, move |k| {
            l.record(&k);
            async {
                Outcome::Success {
                    requeue_after: Duration::from_secs(60),
                }
            }
        });
        q.add(key("a"));
        sleep(Duration::from_secs(60 * 40)).await;
        let got = gaps(&log.starts("a"));
        assert!(got.len() >= 30, "{}", got.len());
        let (lo, hi) = (Duration::from_secs(54), Duration::from_millis(66_002));
        assert!(got.iter().all(|g| (lo..=hi).contains(g)), "{got:?}");
        assert!(got.iter().any(|g| *g != got[0]), "jitter varies: {got:?}");
        q.shutdown();
        run.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_runs_now_and_an_earlier_add_after_wins() {
        let q = Queue::new(2, exact(1000, 8000));
        let log = Log::default();
        let l = log.clone();
        let run = spawn_run(&q, move |k| {
            l.record(&k);
            async {
                Outcome::Success {
                    requeue_after: Duration::from_secs(3600),
                }
            }
        });
        let t0 = Instant::now();
        q.add(key("a"));
        sleep(Duration::from_secs(600)).await;
        assert_eq!(log.starts("a").len(), 1);
        q.add(key("a")); // e.g. reconcile-requested-at changed
        sleep(Duration::from_millis(10)).await;
        let starts = log.starts("a");
        assert_eq!(
            starts.len(),
            2,
            "the trigger ran it without waiting for the interval"
        );
        assert!(near(starts[1] - t0, Duration::from_secs(600)));
        // A later add_after does not postpone a sooner run; a sooner one moves it up.
        let t1 = Instant::now();
        q.add_after(key("a"), Duration::from_secs(7200));
        q.add_after(key("a"), Duration::from_secs(300));
        sleep(Duration::from_secs(400)).await;
        let starts = log.starts("a");
        assert_eq!(starts.len(), 3);
        assert!(near(starts[2] - t1, Duration::from_secs(300)));
        q.shutdown();
        run.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn forget_drops_the_schedule_even_while_running() {
        let q = Queue::new(2, exact(1000, 8000));
        let log = Log::default();
        let l = log.clone();
        let run = spawn_run(&q, move |k| {
            l.record(&k);
            async {
                sleep(Duration::from_secs(2)).await;
                Outcome::Failure { retry_after: None }
            }
        });
        q.add(key("a"));
        q.add(key("b"));
        sleep(Duration::from_millis(2500)).await;
        assert_eq!(q.failures(&key("a")), 1);
        q.forget(&key("a")); // queued for its retry
        sleep(Duration::from_millis(1000)).await;
        assert_eq!(log.starts("b").len(), 2, "b is in its second run");
        q.forget(&key("b")); // in flight
        sleep(Duration::from_secs(60)).await;
        assert_eq!(log.starts("a").len(), 1);
        assert_eq!(log.starts("b").len(), 2);
        assert_eq!(q.failures(&key("a")), 0);
        assert_eq!(q.depth(), (0, 0));
        // Added again, it runs again.
        q.add(key("a"));
        sleep(Duration::from_millis(10)).await;
        assert_eq!(log.starts("a").len(), 2);
        q.shutdown();
        run.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_reconciles_in_flight() {
        let q = Queue::new(2, exact(1000, 8000));
        let finished = Arc::new(AtomicUsize::new(0));
        let f = finished.clone();
        let run = spawn_run(&q, move |_| {
            let f = f.clone();
            async move {
                sleep(Duration::from_secs(5)).await;
                f.fetch_add(1, Ordering::SeqCst);
                Outcome::Success {
                    requeue_after: Duration::from_secs(1),
                }
            }
        });
        q.add(key("a"));
        q.add_after(key("b"), Duration::from_secs(2));
        sleep(Duration::from_secs(1)).await;
        let t = Instant::now();
        q.shutdown();
        run.await.unwrap();
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "a finished, b never started"
        );
        assert!(near(Instant::now() - t, Duration::from_secs(4)));
    }
}

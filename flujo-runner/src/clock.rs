//! Where a run's recorded times come from: the [`Clock`] trait, [`SystemClock`] (the default),
//! [`OffsetClock`] (the system clock shifted), and `RunClock`, which makes a runner's UUID v7 ids
//! from its clock's time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use time::OffsetDateTime;
use uuid::timestamp::context::ContextV7;
use uuid::{Timestamp, Uuid};

/// The wall clock a runner records with: every `start_time` and `end_time` of a run and its
/// steps, and the time inside every run id and step id (UUID v7), come from [`now`](Clock::now).
///
/// Durations (`duration_ms`) never do: they are measured with the monotonic clock, so a clock
/// that jumps does not change them. Set one with [`Flujo::with_clock`](crate::Flujo::with_clock);
/// the default is [`SystemClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current time. Called once per recorded time, and for an id under a lock (so that
    /// ids are made in the order of their times): keep it cheap.
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock (`OffsetDateTime::now_utc()`), the default [`Clock`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The system's wall clock shifted by an offset that can be changed at any time, from any thread
/// (for instance to record runs as if they had run in the past, as `cargo xtask seed --spread`
/// does). Offsets are kept to the nanosecond, within about ±292 years.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_nanos: AtomicI64,
}

impl OffsetClock {
    /// A clock `offset` ahead of the system clock (behind it when negative).
    pub fn new(offset: time::Duration) -> Self {
        OffsetClock {
            offset_nanos: AtomicI64::new(nanos(offset)),
        }
    }

    /// Sets the offset from the system clock; times read afterwards use it.
    pub fn set_offset(&self, offset: time::Duration) {
        self.offset_nanos.store(nanos(offset), Ordering::Relaxed);
    }

    /// The offset from the system clock.
    pub fn offset(&self) -> time::Duration {
        time::Duration::nanoseconds(self.offset_nanos.load(Ordering::Relaxed))
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.offset()
    }
}

/// An offset in whole nanoseconds, saturating.
fn nanos(offset: time::Duration) -> i64 {
    let nanos = offset.whole_nanoseconds();
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

/// A runner's clock and the state of its ids: the millisecond of the last id and uuid's counter
/// for it. Runners with the default clock share one state (like `Uuid::now_v7`'s); each
/// [`Flujo::with_clock`](crate::Flujo::with_clock) makes a new one, which the runner's clones
/// share.
#[derive(Clone)]
pub(crate) struct RunClock {
    clock: Arc<dyn Clock>,
    stamps: Arc<Mutex<Stamps>>,
}

struct Stamps {
    last_ms: u128,
    context: ContextV7,
}

static SYSTEM: LazyLock<RunClock> = LazyLock::new(|| RunClock::new(Arc::new(SystemClock)));

impl RunClock {
    /// The default: the system clock, with the process's one id state.
    pub(crate) fn system() -> Self {
        SYSTEM.clone()
    }

    /// `clock`, with an id state of its own.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        RunClock {
            clock,
            stamps: Arc::new(Mutex::new(Stamps {
                last_ms: 0,
                context: ContextV7::new(),
            })),
        }
    }

    /// The clock's time.
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Reads the clock and makes a UUID v7 whose timestamp is that time (to the millisecond; a
    /// time before 1970 counts as 1970).
    ///
    /// Like `Uuid::now_v7`, ids of this state made in the same millisecond of the clock are
    /// ordered by when they were made; unlike it, a clock that goes back gives ids at its own
    /// time, not at the latest time seen so far.
    pub(crate) fn stamp(&self) -> (OffsetDateTime, Uuid) {
        // A panic while holding the lock leaves the state valid: it is only ever assigned.
        let mut stamps = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
        // Read under the lock: with a clock that only moves on, ids are then made in time order.
        let now = self.clock.now();
        let unix_nanos = u128::try_from(now.unix_timestamp_nanos()).unwrap_or(0);
        let ms = unix_nanos / 1_000_000;
        if ms < stamps.last_ms {
            // uuid's context never goes back in time: start a new one at the clock's time.
            stamps.context = ContextV7::new();
        }
        stamps.last_ms = ms;
        let secs = u64::try_from(unix_nanos / 1_000_000_000).unwrap_or(u64::MAX);
        let subsec = (unix_nanos % 1_000_000_000) as u32;
        let timestamp = Timestamp::from_unix(&stamps.context, secs, subsec);
        drop(stamps);
        (now, Uuid::new_v7(timestamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// A clock that reads a time set by the test.
    struct Fixed(Arc<Mutex<OffsetDateTime>>);

    impl Clock for Fixed {
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().unwrap()
        }
    }

    fn id_millis(id: Uuid) -> u64 {
        let (secs, nanos) = id.get_timestamp().expect("a v7 id").to_unix();
        secs * 1000 + u64::from(nanos) / 1_000_000
    }

    fn millis(time: OffsetDateTime) -> u64 {
        (time.unix_timestamp_nanos() / 1_000_000) as u64
    }

    #[test]
    fn ids_carry_the_clocks_time_also_when_it_goes_back() {
        let time = Arc::new(Mutex::new(datetime!(2025-03-01 10:00:00.123456 UTC)));
        let clock = RunClock::new(Arc::new(Fixed(time.clone())));
        let (first_time, first) = clock.stamp();
        assert_eq!(first_time, datetime!(2025-03-01 10:00:00.123456 UTC));
        assert_eq!(first.get_version_num(), 7);
        assert_eq!(id_millis(first), millis(first_time));
        // ids of one millisecond are ordered as they were made
        let (_, second) = clock.stamp();
        assert!(second > first, "{second} after {first}");
        assert_eq!(id_millis(second), id_millis(first));
        // set back a day: the id follows the clock
        *time.lock().unwrap() = datetime!(2025-02-28 10:00:00.5 UTC);
        let (back_time, back) = clock.stamp();
        assert_eq!(id_millis(back), millis(back_time));
        assert!(back < first);
    }

    #[test]
    fn system_clock_ids_are_ordered_and_current() {
        let before = millis(OffsetDateTime::now_utc());
        let ids: Vec<(OffsetDateTime, Uuid)> =
            (0..1000).map(|_| RunClock::system().stamp()).collect();
        let after = millis(OffsetDateTime::now_utc());
        for pair in ids.windows(2) {
            assert!(pair[0].1 < pair[1].1, "{} before {}", pair[0].1, pair[1].1);
        }
        for (time, id) in &ids {
            assert_eq!(id_millis(*id), millis(*time));
            assert!((before..=after).contains(&millis(*time)));
        }
    }

    #[test]
    fn offset_clock_is_shifted_and_can_be_moved() {
        let clock = OffsetClock::new(time::Duration::days(-90));
        assert_eq!(clock.offset(), time::Duration::days(-90));
        let shifted = clock.now() - OffsetDateTime::now_utc();
        assert!(
            (shifted - time::Duration::days(-90)).abs() < time::Duration::seconds(5),
            "{shifted}"
        );
        clock.set_offset(time::Duration::hours(2));
        let shifted = clock.now() - OffsetDateTime::now_utc();
        assert!(
            (shifted - time::Duration::hours(2)).abs() < time::Duration::seconds(5),
            "{shifted}"
        );
        assert_eq!(
            OffsetClock::new(time::Duration::MAX).offset(),
            time::Duration::nanoseconds(i64::MAX)
        );
    }
}

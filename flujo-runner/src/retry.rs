//! Retry backoff: how long a step waits before each retry (exponential with jitter and a cap,
//! fixed, or none).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How long a retried step waits before each retry; set with
/// [`Step::backoff`](crate::Step::backoff).
///
/// The default, used by every step with [`max_retries`](crate::Step::max_retries) unless told
/// otherwise, is [`Backoff::exponential`] from 200 ms: before retry `n` (1 for the first) the
/// step waits `min(200 ms * 2^(n-1), 10 s)`, less a random jitter of up to half of it, so
/// 100–200 ms before the first retry, 200–400 ms before the second, never more than 10 s. The
/// waits count in the step's `duration_ms`. They need a tokio runtime with time enabled (as
/// [`timeout`](crate::Step::timeout) does); outside any tokio runtime a step retries without
/// waiting.
///
/// ```
/// use flujo_runner::Backoff;
/// use std::time::Duration;
///
/// let backoff = Backoff::exponential(Duration::from_millis(500))
///     .with_max_delay(Duration::from_secs(30))
///     .with_jitter(0.2); // each wait is 80-100% of 500 ms, 1 s, 2 s, ... up to 30 s
/// assert_eq!(Backoff::default(), Backoff::exponential(Duration::from_millis(200)));
/// assert_ne!(backoff, Backoff::fixed(Duration::from_secs(1)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait before the first retry.
    base: Duration,
    /// Whether the wait doubles with every retry.
    doubling: bool,
    max_delay: Duration,
    /// The fraction of each wait that may be taken off at random, in `[0, 1]`.
    jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(200))
    }
}

impl Backoff {
    /// Waits `base` before the first retry and doubles the wait with each retry, up to 10 s
    /// ([`with_max_delay`](Backoff::with_max_delay)), each wait less a random jitter of up to
    /// half of it ([`with_jitter`](Backoff::with_jitter)).
    pub fn exponential(base: Duration) -> Self {
        Backoff {
            base,
            doubling: true,
            max_delay: Duration::from_secs(10),
            jitter: 0.5,
        }
    }

    /// Waits `delay` before every retry (no jitter unless [`with_jitter`](Backoff::with_jitter)).
    pub fn fixed(delay: Duration) -> Self {
        Backoff {
            base: delay,
            doubling: false,
            max_delay: delay,
            jitter: 0.0,
        }
    }

    /// Retries at once, without waiting.
    pub fn none() -> Self {
        Backoff::fixed(Duration::ZERO)
    }

    /// Caps each wait (before jitter).
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Takes a random part of up to `fraction` off each wait: with 0.5, a nominal wait `d`
    /// becomes a wait in `[d/2, d]`; 0 makes the waits exact. Values outside `[0, 1]` (and NaN)
    /// are taken as the nearest of 0 or 1.
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// The wait before retry `retry` (1 for the first), without jitter.
    fn nominal(&self, retry: u32) -> Duration {
        let factor = if self.doubling {
            2u32.saturating_pow(retry.saturating_sub(1))
        } else {
            1
        };
        self.base.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait before retry `retry` (1 for the first); `random` gives a number in `[0, 1)`,
    /// asked for only when there is jitter.
    pub(crate) fn delay(&self, retry: u32, random: impl FnOnce() -> f64) -> Duration {
        let nominal = self.nominal(retry);
        if self.jitter == 0.0 || nominal.is_zero() {
            return nominal;
        }
        let factor = 1.0 - self.jitter * random().clamp(0.0, 1.0);
        Duration::try_from_secs_f64(nominal.as_secs_f64() * factor)
            .map_or(nominal, |delay| delay.min(nominal))
    }
}

/// A number in `[0, 1)`, different at each call: std's per-thread randomly seeded hasher keys,
/// which change with every `RandomState`, are enough for jitter.
pub(crate) fn random_unit() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `backoff`'s waits before retries 1, 2, ... with the random draw fixed at `random`.
    fn check(backoff: Backoff, random: f64, expected: &[Duration]) {
        let delays: Vec<_> = (1..=expected.len() as u32)
            .map(|retry| backoff.delay(retry, || random))
            .collect();
        assert_eq!(delays, expected, "{backoff:?} with random {random}");
    }

    #[test]
    fn exponential_doubles_up_to_the_cap_less_the_jitter() {
        let exact = Backoff::exponential(ms(100)).with_jitter(0.0);
        check(exact, 0.9, &[ms(100), ms(200), ms(400), ms(800), ms(1600)]);
        check(
            exact.with_max_delay(ms(500)),
            0.9,
            &[ms(100), ms(200), ms(400), ms(500), ms(500)],
        );
        // the default jitter takes up to half off
        let jittered = Backoff::exponential(ms(100));
        check(jittered, 0.0, &[ms(100), ms(200), ms(400)]);
        check(jittered, 0.5, &[ms(75), ms(150), ms(300)]);
        check(jittered, 1.0, &[ms(50), ms(100), ms(200)]);
        check(
            Backoff::default(),
            0.0,
            &[
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(6400),
                ms(10_000),
            ],
        );
    }

    #[test]
    fn fixed_none_and_extreme_values() {
        check(Backoff::fixed(ms(250)), 0.7, &[ms(250), ms(250), ms(250)]);
        check(Backoff::fixed(ms(200)).with_jitter(0.5), 0.5, &[ms(150)]);
        check(Backoff::none(), 0.5, &[Duration::ZERO, Duration::ZERO]);
        check(
            Backoff::exponential(ms(100)).with_jitter(7.0),
            1.0,
            &[ms(0)],
        );
        check(
            Backoff::exponential(ms(100)).with_jitter(f64::NAN),
            1.0,
            &[ms(100)],
        );
        // a thousand doublings saturate instead of overflowing
        let huge = Backoff::exponential(Duration::MAX).with_max_delay(Duration::MAX);
        assert_eq!(huge.delay(1000, || 0.0), Duration::MAX);
        assert!(huge.delay(1000, || 0.5) <= Duration::MAX);
    }

    #[test]
    fn random_unit_is_in_range_and_varies() {
        let draws: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|r| (0.0..1.0).contains(r)), "{draws:?}");
        assert!(draws.windows(2).any(|w| w[0] != w[1]), "{draws:?}");
    }
}

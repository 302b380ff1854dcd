//! Retry delays: exponential backoff with "equal jitter", shared by every outbox (indicator
//! points, notifications) so that their retries behave, and are configured, alike.

use std::time::Duration;

/// The delay before retry number `failures` (≥ 1; 0 counts as 1): `initial` doubled per
/// failure, at most `max`, then scaled into `[d/2, d]` by `unit_random` (in [0, 1]) so that many
/// messages or daemons do not retry in lockstep.
pub fn backoff(failures: u32, initial: Duration, max: Duration, unit_random: f64) -> Duration {
    let doubled = initial.as_secs_f64() * 2f64.powi(failures.saturating_sub(1).min(60) as i32);
    let capped = doubled.min(max.as_secs_f64());
    Duration::from_secs_f64(capped * (0.5 + 0.5 * unit_random.clamp(0.0, 1.0)))
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, s(2), s(60), 1.0), s(2));
        assert_eq!(backoff(1, s(2), s(60), 0.0), s(1));
        assert_eq!(backoff(3, s(2), s(60), 1.0), s(8));
        assert_eq!(backoff(6, s(2), s(60), 1.0), s(60));
        assert_eq!(backoff(500, s(2), s(60), 0.5), Duration::from_secs_f64(45.0));
        assert_eq!(backoff(0, s(2), s(60), 1.0), s(2));
    }

    /// The notification outbox's table (seconds, attempts counted from 1).
    #[test]
    fn notification_retries_double_cap_and_jitter() {
        let secs = |initial: f64, max: f64, attempts: u32, r: f64| {
            backoff(attempts, Duration::from_secs_f64(initial), Duration::from_secs_f64(max), r).as_secs_f64()
        };
        assert_eq!(secs(30.0, 3600.0, 1, 1.0), 30.0);
        assert_eq!(secs(30.0, 3600.0, 1, 0.0), 15.0);
        assert_eq!(secs(30.0, 3600.0, 3, 1.0), 120.0);
        assert_eq!(secs(30.0, 3600.0, 20, 1.0), 3600.0);
        assert_eq!(secs(0.0, 0.0, 5, 0.5), 0.0);
    }
}

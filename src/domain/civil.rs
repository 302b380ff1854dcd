//! Fast civil-time arithmetic for the hot paths (sacct parsing, daily proration, the benchmark
//! generator): epoch seconds ↔ civil date-times by integer days-from-civil arithmetic, with a
//! time zone's UTC offset cached per hour.
//!
//! jiff stays the authority: the cache only keeps an hour whose two ends jiff maps with the same
//! offset (so the whole hour has it), and anything else is asked of jiff directly. Results are
//! exactly jiff's, including its "compatible" reading of civil times that a DST change skips or
//! repeats (tested against jiff below, minute by minute across transitions).

use jiff::{civil::DateTime, tz::TimeZone, Timestamp};

const SLOTS: usize = 64;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// A time zone with its offsets cached per hour, for converting many nearby instants.
#[derive(Debug, Clone)]
pub struct LocalClock {
    tz: TimeZone,
    /// UTC hour → offset (seconds), direct-mapped.
    by_utc_hour: [(i64, i32); SLOTS],
    /// Local (civil) hour → offset that jiff's compatible reading gives the whole hour.
    by_local_hour: [(i64, i32); SLOTS],
}

impl LocalClock {
    /// A clock for `tz`.
    pub fn new(tz: &TimeZone) -> LocalClock {
        LocalClock { tz: tz.clone(), by_utc_hour: [(i64::MIN, 0); SLOTS], by_local_hour: [(i64::MIN, 0); SLOTS] }
    }

    /// The zone.
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    fn jiff_offset(&self, t: i64) -> i32 {
        match Timestamp::from_second(t) {
            Ok(ts) => self.tz.to_offset(ts).seconds(),
            Err(_) => 0,
        }
    }

    /// UTC offset (seconds) in force at instant `t` (epoch seconds).
    pub(crate) fn offset_at(&mut self, t: i64) -> i32 {
        let hour = t.div_euclid(3600);
        let slot = hour.rem_euclid(SLOTS as i64) as usize;
        let (h, o) = self.by_utc_hour[slot];
        if h == hour {
            return o;
        }
        let first = self.jiff_offset(hour * 3600);
        if first == self.jiff_offset(hour * 3600 + 3599) {
            self.by_utc_hour[slot] = (hour, first);
            first
        } else {
            self.jiff_offset(t)
        }
    }

    /// Local civil seconds since 1970-01-01T00:00 (local) of instant `t`.
    pub fn local_seconds(&mut self, t: i64) -> i64 {
        t + self.offset_at(t) as i64
    }

    /// Local day number (days since 1970-01-01) containing instant `t`.
    pub fn local_day(&mut self, t: i64) -> i32 {
        self.local_seconds(t).div_euclid(86_400) as i32
    }

    /// The instant of a local civil time given as seconds since 1970-01-01T00:00 (local), read
    /// as jiff's `to_timestamp` does (compatible: a skipped time is read with the offset before
    /// the change, a repeated one as its first occurrence).
    pub fn instant_of_local(&mut self, local_s: i64) -> Option<i64> {
        let hour = local_s.div_euclid(3600);
        let slot = hour.rem_euclid(SLOTS as i64) as usize;
        let (h, o) = self.by_local_hour[slot];
        if h == hour {
            return Some(local_s - o as i64);
        }
        let first = self.jiff_instant(hour * 3600)?;
        let last = self.jiff_instant(hour * 3600 + 3599)?;
        let (o0, o1) = (hour * 3600 - first, hour * 3600 + 3599 - last);
        if o0 == o1 {
            self.by_local_hour[slot] = (hour, o0 as i32);
            Some(local_s - o0)
        } else {
            self.jiff_instant(local_s)
        }
    }

    fn jiff_instant(&self, local_s: i64) -> Option<i64> {
        let days = local_s.div_euclid(86_400);
        let secs = local_s.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let dt = DateTime::new(
            i16::try_from(y).ok()?,
            m as i8,
            d as i8,
            (secs / 3600) as i8,
            (secs / 60 % 60) as i8,
            (secs % 60) as i8,
            0,
        )
        .ok()?;
        self.tz.to_timestamp(dt).ok().map(|ts| ts.as_second())
    }

    /// The instant local day `day` starts (its first instant, as jiff's `day_start`).
    pub fn day_start(&mut self, day: i32) -> i64 {
        // jiff's compatible reading of a skipped midnight is the first instant after the gap;
        // the local-hour path gives exactly that.
        self.instant_of_local(day as i64 * 86_400).unwrap_or(day as i64 * 86_400)
    }
}

/// Whether two zones are the same rules (by IANA name when they have one: cheap, and a name
/// means one set of rules within a process).
fn same_zone(a: &TimeZone, b: &TimeZone) -> bool {
    match (a.iana_name(), b.iana_name()) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a == b,
        _ => false,
    }
}

thread_local! {
    /// This thread's clocks, one per zone in use (a cache only: results never depend on it).
    static CLOCKS: std::cell::RefCell<Vec<LocalClock>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's cached [`LocalClock`] for `tz`.
pub(crate) fn with_clock<T>(tz: &TimeZone, f: impl FnOnce(&mut LocalClock) -> T) -> T {
    CLOCKS.with(|cell| {
        let mut clocks = cell.borrow_mut();
        let i = match clocks.iter().position(|c| same_zone(&c.tz, tz)) {
            Some(i) => i,
            None => {
                if clocks.len() >= 8 {
                    clocks.remove(0);
                }
                clocks.push(LocalClock::new(tz));
                clocks.len() - 1
            }
        };
        f(&mut clocks[i])
    })
}

/// Parse sacct's civil `YYYY-MM-DDTHH:MM:SS` into local seconds since 1970-01-01T00:00, or
/// `None` when it is not exactly that shape or not a valid date and time.
pub(crate) fn parse_civil(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as i64;
        }
        Some(v)
    };
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo as usize - 1];
    if d > month_days {
        return None;
    }
    Some(days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Write local seconds as `YYYY-MM-DDTHH:MM:SS`.
pub fn format_civil(local_s: i64, out: &mut String) {
    use std::fmt::Write;
    let (y, m, d) = civil_from_days(local_s.div_euclid(86_400));
    let s = local_s.rem_euclid(86_400);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: jiff::civil::Date = jiff::civil::Date::constant(1970, 1, 1);

    /// jiff's own answers, the reference.
    fn local_day(s: i64, tz: &TimeZone) -> i32 {
        (Timestamp::from_second(s).unwrap().to_zoned(tz.clone()).date() - EPOCH).get_days()
    }
    fn day_start(d: i32, tz: &TimeZone) -> i64 {
        EPOCH.checked_add(jiff::Span::new().days(d as i64)).unwrap().to_zoned(tz.clone()).unwrap().timestamp().as_second()
    }

    #[test]
    fn day_arithmetic_matches_jiff() {
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
            let date = jiff::civil::Date::new(y as i16, m as i8, d as i8).unwrap();
            assert_eq!((date - EPOCH).get_days() as i64, z);
        }
    }

    #[test]
    fn offsets_and_civil_readings_match_jiff_across_transitions() {
        for zone in ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"] {
            let tz = TimeZone::get(zone).unwrap();
            let mut clock = LocalClock::new(&tz);
            // 2025-2026 minute by minute around every day boundary and every transition hour,
            // and a coarse sweep in between.
            let from = Timestamp::from_second(1_735_689_600).unwrap(); // 2025-01-01
            let mut t = from.as_second();
            while t < from.as_second() + 2 * 366 * 86_400 {
                let z = Timestamp::from_second(t).unwrap().to_zoned(tz.clone());
                assert_eq!(clock.offset_at(t), z.offset().seconds(), "{zone} offset at {t}");
                assert_eq!(clock.local_day(t), local_day(t, &tz), "{zone} local day at {t}");
                let dt = z.datetime();
                let local = days_from_civil(dt.year() as i64, dt.month() as u32, dt.day() as u32) * 86_400
                    + dt.hour() as i64 * 3600
                    + dt.minute() as i64 * 60
                    + dt.second() as i64;
                let want = tz.to_timestamp(dt).unwrap().as_second();
                assert_eq!(clock.instant_of_local(local), Some(want), "{zone} civil {dt}");
                // Civil times that do not exist or repeat, read as jiff reads them.
                let skewed = local + 1800;
                assert_eq!(clock.instant_of_local(skewed), clock.jiff_instant(skewed), "{zone} civil {skewed}");
                t += 599;
            }
            for day in 20_000..20_500 {
                assert_eq!(clock.day_start(day), day_start(day, &tz), "{zone} day {day}");
            }
        }
    }

    #[test]
    fn civil_text_round_trips_and_rejects_bad_shapes() {
        let s = parse_civil("2016-12-22T07:15:12").unwrap();
        let mut out = String::new();
        format_civil(s, &mut out);
        assert_eq!(out, "2016-12-22T07:15:12");
        for bad in ["2016-02-30T00:00:00", "2016-12-22 07:15:12", "2016-13-01T00:00:00", "2016-12-22T24:00:00", "2016-12-22T07:15"] {
            assert_eq!(parse_civil(bad), None, "{bad}");
        }
        assert!(parse_civil("2016-02-29T23:59:59").is_some());
    }
}

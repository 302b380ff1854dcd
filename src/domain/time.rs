//! Days and instants: a centre's local days (the ledger's keys), instants as epoch seconds, and
//! the one way each is read from text and printed. Every consumer calls these: nothing else
//! formats an epoch second or parses a date.

use jiff::{civil::Date, civil::DateTime, tz::TimeZone, Timestamp};

/// A local calendar day of a centre, as days since 1970-01-01 (compact key for the ledger).
pub(crate) type DayNumber = i32;

/// Seconds in a day of 24 hours (burn rates, windows counted in days).
pub(crate) const DAY_S: i64 = 86_400;

/// The day number of a civil date.
pub fn day_number(d: Date) -> DayNumber {
    let epoch = Date::constant(1970, 1, 1);
    // A span in days between two civil dates is exact (no time zone involved).
    (d - epoch).get_days()
}

/// The civil date of a day number.
pub fn day_date(n: DayNumber) -> Date {
    Date::constant(1970, 1, 1).checked_add(jiff::Span::new().days(n as i64)).expect("day numbers come from valid dates")
}

/// Local day (in `tz`) that contains the instant `s` (epoch seconds).
pub fn local_day(s: i64, tz: &TimeZone) -> DayNumber {
    // Offsets cached per hour (exactly jiff's answer; see `civil`): this runs for every job
    // imported and every bucket reconciled.
    super::civil::with_clock(tz, |c| c.local_day(s))
}

/// The local date (in `tz`) of the instant `s`.
pub(crate) fn local_date(s: i64, tz: &TimeZone) -> Date {
    day_date(local_day(s, tz))
}

/// The instant (epoch seconds) at which local day `d` starts in `tz`.
pub fn day_start(d: DayNumber, tz: &TimeZone) -> i64 {
    // Midnight can be skipped by a DST change in a few zones; it then resolves compatibly
    // (the first instant after the gap), which is what a day boundary means.
    super::civil::with_clock(tz, |c| c.day_start(d))
}

/// The instant local date `d` starts in `tz`.
pub(crate) fn date_start(d: Date, tz: &TimeZone) -> i64 {
    day_start(day_number(d), tz)
}

/// Parse an instant: RFC 3339 (`2026-11-21T10:00:00Z`, `…+01:00`), a civil date-time
/// (`2026-11-21T10:00:00`, read in `tz`), or a date (`2026-11-21`, midnight in `tz`).
pub(crate) fn parse_instant(s: &str, tz: &TimeZone) -> Result<Timestamp, String> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts);
    }
    if let Ok(dt) = s.parse::<DateTime>() {
        if s.contains('T') || s.contains(' ') {
            return dt.to_zoned(tz.clone()).map(|z| z.timestamp()).map_err(|e| e.to_string());
        }
    }
    if let Ok(d) = s.parse::<Date>() {
        return d.to_zoned(tz.clone()).map(|z| z.timestamp()).map_err(|e| e.to_string());
    }
    Err(format!("`{s}` is not an instant (RFC 3339 like 2026-11-21T10:00:00Z, or a date YYYY-MM-DD)"))
}

/// Parse a date `YYYY-MM-DD`.
pub(crate) fn parse_date(s: &str) -> Result<Date, String> {
    s.trim().parse::<Date>().map_err(|_| format!("`{s}` is not a date (YYYY-MM-DD)"))
}

/// The instant of epoch seconds `s`. Instants outside jiff's range (years beyond ±9999) cannot
/// come from a clock or a valid record; they are clamped to the range's ends.
pub fn timestamp(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(if s < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// RFC 3339 rendering of an instant in UTC (`2026-11-21T10:00:00Z`): how every instant is
/// printed in logs, tables, JSON and messages.
pub(crate) fn rfc3339(s: i64) -> String {
    match Timestamp::from_second(s) {
        Ok(t) => t.to_string(),
        Err(_) => s.to_string(),
    }
}

/// RFC 3339 rendering of an instant in a zone, with its offset (`2026-11-21T11:00:00+01:00`).
pub(crate) fn rfc3339_in(s: i64, tz: &TimeZone) -> String {
    match Timestamp::from_second(s) {
        Ok(ts) => ts.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        Err(_) => s.to_string(),
    }
}

/// An instant shown in a centre's zone: serialised as [`rfc3339_in`] (a projected exhaustion
/// reads in the centre's local time).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalInstant {
    /// Epoch seconds.
    pub s: i64,
    /// The zone it is shown in.
    pub tz: TimeZone,
}

impl LocalInstant {
    /// The local date of the instant.
    pub fn date(&self) -> Date {
        local_date(self.s, &self.tz)
    }
}

impl std::fmt::Display for LocalInstant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&rfc3339_in(self.s, &self.tz))
    }
}

impl serde::Serialize for LocalInstant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `serde(serialize_with)` for epoch seconds shown as [`rfc3339`].
pub(crate) fn serialize_rfc3339<S: serde::Serializer>(s: &i64, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&rfc3339(*s))
}

/// `serde(serialize_with)` for optional epoch seconds shown as [`rfc3339`] (or null).
pub(crate) fn serialize_rfc3339_opt<S: serde::Serializer>(s: &Option<i64>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_str(&rfc3339(*s)),
        None => ser.serialize_none(),
    }
}

/// The UTC date of an instant (tables that show a day of an instant printed in UTC).
pub(crate) fn utc_date(s: i64) -> Date {
    local_date(s, &TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        assert_eq!(parse_instant("2026-01-01T00:00:00Z", &paris).unwrap().as_second(), 1767225600);
        assert_eq!(parse_instant("2026-01-01", &paris).unwrap().as_second(), 1767225600 - 3600);
        assert_eq!(parse_instant("2026-01-01T01:00:00", &paris).unwrap().as_second(), 1767225600);
        assert!(parse_instant("tomorrow", &paris).is_err());
        assert_eq!(rfc3339_in(1767225600, &paris), "2026-01-01T01:00:00+01:00");
        assert_eq!(rfc3339(1767225600), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
        let l = LocalInstant { s: 1767225600, tz: paris };
        assert_eq!(serde_json::to_string(&l).unwrap(), "\"2026-01-01T01:00:00+01:00\"");
        assert_eq!(l.date(), Date::constant(2026, 1, 1));
    }
}

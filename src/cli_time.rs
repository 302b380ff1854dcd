//! Instants and dates given on the command line or in configuration.

use jiff::{civil::Date, civil::DateTime, tz::TimeZone, Timestamp};

/// Parse an instant: RFC 3339 (`2026-11-21T10:00:00Z`, `…+01:00`), a civil date-time
/// (`2026-11-21T10:00:00`, read in `tz`), or a date (`2026-11-21`, midnight in `tz`).
pub fn parse_instant(s: &str, tz: &TimeZone) -> Result<Timestamp, String> {
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
pub fn parse_date(s: &str) -> Result<Date, String> {
    s.trim().parse::<Date>().map_err(|_| format!("`{s}` is not a date (YYYY-MM-DD)"))
}

/// RFC 3339 rendering of an instant in a zone, with its offset.
pub fn rfc3339_in(s: i64, tz: &TimeZone) -> String {
    match Timestamp::from_second(s) {
        Ok(ts) => ts.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        Err(_) => s.to_string(),
    }
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
    }
}

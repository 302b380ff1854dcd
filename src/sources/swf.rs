//! Standard Workload Format (Parallel Workloads Archive), plain or gzip-compressed.
//!
//! 18 whitespace-separated fields per job; times are seconds relative to the header's
//! `UnixStartTime`. The group id becomes the account and the partition number is mapped to the
//! name given by the header's `; Partition: N name` lines.

use super::{LineError, LineKind};
#[cfg(test)]
use super::Parsed;
use crate::domain::job::{JobRecord, Units};
use std::collections::HashMap;

/// Header facts that data lines need.
#[derive(Debug, Clone, Default)]
pub(crate) struct SwfHeader {
    /// `; UnixStartTime:` — epoch of the trace's time origin.
    pub unix_start: Option<i64>,
    /// `; TimeZoneString:` — the installation's zone.
    pub time_zone: Option<String>,
    /// `; Partition: N name` lines.
    pub partitions: HashMap<i64, String>,
}

impl SwfHeader {
    /// Absorb one `;` comment line.
    pub(crate) fn absorb(&mut self, line: &str) {
        let body = line.trim_start_matches(';').trim();
        let Some((key, value)) = body.split_once(':') else { return };
        let value = value.trim();
        match key.trim() {
            "UnixStartTime" => self.unix_start = value.parse().ok(),
            "TimeZoneString" => self.time_zone = Some(value.to_string()),
            "Partition" => {
                let mut it = value.splitn(2, char::is_whitespace);
                if let (Some(n), Some(name)) = (it.next(), it.next()) {
                    if let Ok(n) = n.parse::<i64>() {
                        self.partitions.insert(n, name.trim().to_string());
                    }
                }
            }
            _ => {}
        }
    }
}

/// Parse one SWF data line. `cluster` is the centre's cluster the trace belongs to.
#[cfg(test)]
pub(crate) fn parse_line(header: &SwfHeader, cluster: &str, file: &str, line: u64, text: &str) -> Result<Parsed, LineError> {
    let mut rec = JobRecord::empty();
    Ok(match parse_line_into(header, cluster, file, line, text, &mut rec)? {
        LineKind::Job => Parsed::Job(rec),
        LineKind::Step => Parsed::Step,
        LineKind::NotStarted => Parsed::NotStarted,
    })
}

/// As [`parse_line`], writing a job into `rec` (reusing its strings' memory).
pub(crate) fn parse_line_into(
    header: &SwfHeader,
    cluster: &str,
    file: &str,
    line: u64,
    text: &str,
    rec: &mut JobRecord,
) -> Result<LineKind, LineError> {
    let err = |field: &str, reason: String| LineError { file: file.into(), line, field: Some(field.into()), reason };
    let mut f = [""; 18];
    let mut found = 0;
    for (i, word) in text.split_whitespace().enumerate() {
        if i < 18 {
            f[i] = word;
        }
        found += 1;
    }
    if found != 18 {
        return Err(LineError { file: file.into(), line, field: None, reason: format!("expected 18 SWF fields, found {found}") });
    }
    const NAMES: [&str; 18] = [
        "job number", "submit time", "wait time", "run time", "allocated processors", "average cpu time",
        "used memory", "requested processors", "requested time", "requested memory", "status", "user id",
        "group id", "executable", "queue", "partition", "preceding job", "think time",
    ];
    let mut v = [0i64; 18];
    for i in 0..18 {
        // Some archives write floats (e.g. average CPU time); the fields we charge by are integral.
        v[i] = match f[i].parse::<i64>() {
            Ok(x) => x,
            Err(_) => match f[i].parse::<f64>() {
                Ok(x) if x.is_finite() && x.abs() < 1e15 => x as i64,
                _ => return Err(err(NAMES[i], format!("`{}` is not a number", f[i]))),
            },
        };
    }
    let Some(origin) = header.unix_start else {
        return Err(err("submit time", "no `; UnixStartTime:` header line before the first job".into()));
    };
    if v[0] < 0 {
        return Err(err("job number", "negative job number".into()));
    }
    let (submit, wait, run) = (v[1], v[2], v[3]);
    if submit < 0 || wait < 0 || run < 0 {
        // The archive writes -1 for unknown: the job never ran or was not recorded.
        return Ok(LineKind::NotStarted);
    }
    let procs = if v[4] > 0 { v[4] } else { 0 } as u64;
    let start_s = origin + submit + wait;
    use std::fmt::Write as _;
    rec.partition.clear();
    match v[15] {
        -1 => {}
        n => match header.partitions.get(&n) {
            Some(name) => rec.partition.push_str(name),
            None => {
                let _ = write!(rec.partition, "{n}");
            }
        },
    }
    rec.cluster.clear();
    rec.cluster.push_str(cluster);
    rec.job_id_raw = v[0] as u64;
    rec.job_id.clear();
    let _ = write!(rec.job_id, "{}", v[0]);
    rec.account.clear();
    if v[12] >= 0 {
        let _ = write!(rec.account, "{}", v[12]);
    }
    rec.user.clear();
    if v[11] >= 0 {
        let _ = write!(rec.user, "{}", v[11]);
    }
    rec.start_s = start_s;
    rec.end_s = start_s + run;
    rec.elapsed_s = run;
    rec.units = Units { cpus: procs, gpus: 0, billing: procs, nodes: 0 };
    rec.provisional = false;
    // Field 9, the requested time (the job's limit), in seconds; -1 when unknown.
    rec.time_limit_s = Some(v[8]).filter(|&t| t > 0);
    Ok(LineKind::Job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curie_line_and_partition_names() {
        let mut h = SwfHeader::default();
        h.absorb("; UnixStartTime: 1296571124");
        h.absorb("; TimeZoneString: Europe/Paris");
        h.absorb("; Partition:  4  large");
        let j = match parse_line(&h, "curie", "t.swf", 30, "272393 31656837  33492  86395  256     -1    -1  256  86400    -1  1  87  95  -1 -1  4 -1 -1").unwrap() {
            Parsed::Job(j) => j,
            o => panic!("{o:?}"),
        };
        assert_eq!(j.start_s, 1296571124 + 31656837 + 33492);
        assert_eq!(j.elapsed_s, 86395);
        assert_eq!(j.account, "95");
        assert_eq!(j.partition, "large");
        assert_eq!(j.units.cpus, 256);
        assert_eq!(j.time_limit_s, Some(86400));
        assert_eq!(h.time_zone.as_deref(), Some("Europe/Paris"));
        // Requested time unknown (-1): no limit.
        let j = match parse_line(&h, "curie", "t.swf", 31, "272394 31656837  33492  60  16  -1  -1  16  -1  -1  1  87  95  -1 -1  4 -1 -1").unwrap() {
            Parsed::Job(j) => j,
            o => panic!("{o:?}"),
        };
        assert_eq!((j.time_limit_s, j.elapsed_s), (None, 60));
    }

    #[test]
    fn bad_lines_are_named() {
        let mut h = SwfHeader::default();
        h.absorb("; UnixStartTime: 0");
        let e = parse_line(&h, "c", "t.swf", 7, "1 2 3").unwrap_err();
        assert!(e.reason.contains("18"));
        let e = parse_line(&h, "c", "t.swf", 8, "1 2 x 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("wait time"));
        assert!(matches!(parse_line(&h, "c", "t.swf", 9, "1 2 -1 -1 5 6 7 8 9 10 11 12 13 14 15 16 17 18").unwrap(), Parsed::NotStarted));
    }
}

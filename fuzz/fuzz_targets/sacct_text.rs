//! sacct `-P` text, with a header line and with `--fields xdmod`: no panic, every rejection
//! names the input and a line that exists.
#![no_main]
use allocwatch::sources::{read_stream, FileFormat, SourceContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ctx = SourceContext { tz: jiff::tz::TimeZone::get("Europe/Paris").unwrap(), default_cluster: "c".into(), observed_at: 1_800_000_000 };
    let lines = data.split(|b| *b == b'\n').count() as u64;
    for fields in [None, Some("xdmod".to_string())] {
        let _ = read_stream(data, "fuzz", &FileFormat::Sacct { fields }, &ctx, |item| {
            if let Err(e) = item {
                assert_eq!(e.file, "fuzz");
                assert!(e.line >= 1 && e.line <= lines + 1);
                assert!(!e.reason.is_empty());
            }
        });
    }
});

//! Standard Workload Format text: no panic, every rejection names a line.
#![no_main]
use allocwatch::sources::{read_stream, FileFormat, SourceContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ctx = SourceContext { tz: jiff::tz::TimeZone::UTC, default_cluster: "c".into(), observed_at: 0 };
    let _ = read_stream(data, "fuzz.swf", &FileFormat::Swf, &ctx, |item| {
        if let Err(e) = item {
            assert!(e.line >= 1);
        }
    });
});

//! slurmrestd / `sacct --json` job documents of any shape: no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = allocwatch::sources::slurm_json::decode_jobs(&doc, "fuzz", "c", 1_800_000_000);
        let _ = allocwatch::sources::slurm_json::jobs_endpoints(&doc);
    }
});

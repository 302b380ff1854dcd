//! Allocation (CSV and TOML) and adjustment files: no panic; errors name file and line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cfg = allocwatch::config::Config::parse(
        "[store]\npath = \"x\"\n[profiles.q]\npoints = [[0.0, 0.0], [1.0, 1.0]]\n[[centre]]\nid = \"c\"\ntimezone = \"UTC\"\nclusters = [\"k\"]\n[[centre.billing]]\nresource = \"cpu\"\npartitions = [\"p\"]\nunit = \"cpu\"\n",
        Path::new("c.toml"),
    )
    .unwrap();
    for name in ["alloc.csv", "alloc.toml"] {
        if let Err(e) = allocwatch::domain::grants::Grants::parse(&cfg, &[(name.into(), text.into())], &[]) {
            assert!(e.to_string().starts_with(name));
        }
    }
    let alloc = "project,centre,resource,period_start,period_end,granted_hours,accounts\nP,c,cpu,2026-01-01,2027-01-01,100,a\n";
    if let Err(e) = allocwatch::domain::grants::Grants::parse(&cfg, &[("a.csv".into(), alloc.into())], &[("adj.csv".into(), text.into())]) {
        assert!(e.to_string().starts_with("adj.csv"));
    }
});

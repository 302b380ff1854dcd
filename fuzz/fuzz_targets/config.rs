//! Configuration files: no panic; errors name the file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = allocwatch::config::Config::parse(text, std::path::Path::new("fuzz.toml")) {
        assert!(e.to_string().starts_with("fuzz.toml"));
    }
});

//! Fuzzes the configuration loader: TOML parsing, overrides and validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        conntrackd::fuzzing::config(text);
    }
});

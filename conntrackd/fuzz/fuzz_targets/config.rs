//! Fuzzes the configuration loader: TOML parsing, overrides and validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conntrackd::fuzzing::config(data));

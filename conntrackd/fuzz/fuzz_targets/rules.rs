//! Fuzzes the rule parsers (keyword and CEL), the kernel table derivation and
//! its soundness on sample events.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        conntrackd::fuzzing::rules(text);
    }
});

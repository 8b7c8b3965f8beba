//! Fuzzes the rule parsers (keyword and CEL) on raw text, one rule per line,
//! the kernel table derivation and its soundness on sample events.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conntrackd::fuzzing::rules(data));

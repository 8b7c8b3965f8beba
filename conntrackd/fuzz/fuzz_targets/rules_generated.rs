//! Fuzzes the rule parsers with generated rule trees (deep, long, both
//! languages): limits at the right column, same verdicts in keyword and CEL.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conntrackd::fuzzing::rules_generated(data));

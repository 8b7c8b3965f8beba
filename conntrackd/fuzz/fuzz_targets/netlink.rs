//! Fuzzes the userspace ctnetlink decoder (the netlink source).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conntrackd::fuzzing::netlink(data));

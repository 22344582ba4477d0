//! libFuzzer entry point for [`licensing_fuzz::tokens::run`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| licensing_fuzz::tokens::run(data));

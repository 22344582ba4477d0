//! libFuzzer entry point for [`licensing_fuzz::api::run`]: one control plane per
//! process, opened on the first input.

#![no_main]

use std::sync::OnceLock;

static API: OnceLock<licensing_fuzz::api::Api> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    API.get_or_init(licensing_fuzz::api::Api::open).run(data);
});

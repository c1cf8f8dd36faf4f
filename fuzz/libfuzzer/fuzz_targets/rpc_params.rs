#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = canon_fuzz::rpc_params(data);
});

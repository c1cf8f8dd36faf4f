#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = canon_fuzz::p2p_channel(data);
});

#![no_main]

// A stranger's bytes never complete a handshake.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(canon_fuzz::p2p_accept(data));
});

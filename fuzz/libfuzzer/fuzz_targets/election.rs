#![no_main]

// Never a campaign without a quorum of pre-votes for its round, never twice, never abstaining.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    canon_fuzz::election(data);
});

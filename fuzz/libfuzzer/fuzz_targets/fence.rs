#![no_main]

// Never two blocks chosen for one height, whatever the schedule.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    canon_fuzz::fence(data);
});

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let decoded = canon_fuzz::decode_all(&data);
        prop_assert!(decoded <= 4);
        let _ = canon_fuzz::verify_untrusted_block(&data);
    }
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let decoded = canon_fuzz::decode_all(&data);
        prop_assert!(decoded <= 5);
        let _ = canon_fuzz::verify_untrusted_block(&data);
    }

    #[test]
    fn a_strangers_bytes_never_complete_a_handshake(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(canon_fuzz::p2p_accept(&data));
    }

    /// Bytes shaped like the wire (a length prefix, then that many bytes) reach Noise itself.
    #[test]
    fn framed_garbage_never_completes_a_handshake(
        pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..4)
    ) {
        let mut data = Vec::new();
        for p in &pieces {
            data.extend_from_slice(&(p.len() as u32).to_be_bytes());
            data.extend_from_slice(p);
        }
        prop_assert!(canon_fuzz::p2p_accept(&data));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn configs_end_in_settings_or_a_named_error(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = canon_fuzz::config(&data);
    }

    /// JSON-ish parameter text (arrays of hex strings, numbers, nulls and stray tokens), so
    /// random cases get past the first bracket.
    #[test]
    fn rpc_parameters_end_in_a_call_or_invalid_params(
        selector in any::<u8>(),
        text in r#"\[("0x[0-9a-fz]{0,6}"|-?[0-9]{1,22}|null|"latest"|"local"|\[|\]|,| ){0,12}\]?"#,
    ) {
        let mut data = vec![selector];
        data.extend_from_slice(text.as_bytes());
        let _ = canon_fuzz::rpc_params(&data);
    }

    #[test]
    fn a_hostile_peers_pieces_never_break_the_session(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = canon_fuzz::p2p_channel(&data);
    }

    #[test]
    fn settlement_logs_end_in_an_event_or_a_named_error(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = canon_fuzz::settlement_events(&data);
    }

    #[test]
    fn the_signing_guard_never_lets_two_blocks_through(data in proptest::collection::vec(any::<u8>(), 0..160)) {
        canon_fuzz::signing_guard(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_fence_never_chooses_two_blocks_for_a_height(data in proptest::collection::vec(any::<u8>(), 0..120)) {
        canon_fuzz::fence(&data);
    }

    #[test]
    fn the_election_never_campaigns_without_pre_votes(data in proptest::collection::vec(any::<u8>(), 0..240)) {
        canon_fuzz::election(&data);
    }
}

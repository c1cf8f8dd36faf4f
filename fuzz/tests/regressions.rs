//! Failures the fuzzers found, minimised and kept as readable schedules once fixed, so the
//! normal test suite replays them whatever the fuzzers' input format becomes.

use canon_fuzz::policies::{fence_schedule, FenceStep};

/// Found by cargo-fuzz with acceptors planted to promise one round twice (proptest's random
/// schedules missed it in 20,000 cases): two proposers that the same majority promised in
/// one round would each get their own block chosen. Thirteen steps.
#[test]
fn two_proposers_promised_in_one_round_never_both_choose() {
    use FenceStep::{Accept, Prepare, Start, Tick};
    let steps = [
        Tick,
        Tick,
        Tick,
        Start { proposer: 0 },
        Start { proposer: 1 },
        Prepare {
            proposer: 0,
            acceptor: 0,
        },
        Prepare {
            proposer: 0,
            acceptor: 1,
        },
        Prepare {
            proposer: 1,
            acceptor: 0,
        },
        Prepare {
            proposer: 1,
            acceptor: 1,
        },
        Accept {
            proposer: 0,
            acceptor: 0,
        },
        Accept {
            proposer: 0,
            acceptor: 1,
        },
        Accept {
            proposer: 1,
            acceptor: 0,
        },
        Accept {
            proposer: 1,
            acceptor: 1,
        },
    ];
    assert_eq!(
        fence_schedule(&steps),
        1,
        "proposer 0's block is chosen, and nothing else"
    );
}

/// Found by cargo-fuzz after 4.7 million inputs: an input holding a frame shaped like the
/// harness's own end-of-input sentinel ended the read early, and the pieces it left in the
/// session (the closing piece and the real sentinel) tripped a later input ("the sentinel
/// did not arrive"). A harness fault, not the channel's: the sentinel now carries a token
/// fresh for each call, and a forged one is just a frame.
#[test]
fn a_sentinel_forged_inside_an_input_is_just_a_frame() {
    use canon_engine::net::p2p::frame::Frame;
    let forged = canon_engine::codec::encode(&Frame::Response {
        id: u64::MAX,
        body: Vec::new(),
    })
    .unwrap();
    let mut input = vec![u8::try_from(forged.len() + 1).unwrap(), 0];
    input.extend_from_slice(&forged);
    // Then a piece that ends an empty frame: refused, as malformed.
    input.extend_from_slice(&[1, 0]);
    assert_eq!(canon_fuzz::p2p_channel(&input), 1, "the forged sentinel");
    let (_, _, seed) = canon_fuzz::seed_inputs()
        .into_iter()
        .find(|(target, _, _)| *target == "p2p_channel")
        .unwrap();
    assert_eq!(
        canon_fuzz::p2p_channel(&seed),
        2,
        "the next input reads its own two frames and nothing left behind"
    );
}

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

//! The node's decisions, as plain state machines.
//!
//! Every policy here follows one pattern (quinn-proto's `handle_timeout(now)` / `poll_transmit`,
//! raft-rs's `tick` / `step`): a struct that holds what the policy remembers, fed with `now`
//! (monotonic milliseconds since the node started, [`Millis`]) and with what the node observed,
//! returning the actions to take. A policy never reads a clock, never sleeps, never touches
//! storage or the network, and draws randomness only from an RNG it was given. The async tasks
//! in `node` only gather observations, call the policy and carry its actions out.
//!
//! To add a decision (a standby stepping in, a batch sealing): write its struct and action
//! enum here, one module per concept; give it a table-driven test that runs in milliseconds;
//! then have one task feed it and execute what it returns.

pub mod admission;
pub mod backfill_cursor;
pub mod batcher;
pub mod batcher_failover;
pub mod certifier;
pub mod contact;
pub mod download;
pub mod election;
pub mod fence;
pub mod fence_proposer;
pub mod fork_choice;
pub mod fork_search;
pub mod log_budget;
pub mod membership;
pub mod rate_limit;
pub mod reachability;
pub mod redundancy;
pub mod repair;
pub mod round_clock;
pub mod sequencer;

/// Monotonic milliseconds since the node started: the only time a policy sees.
pub type Millis = u64;

/// Forgets the entry of `map` whose `at` is earliest: how a policy keeps per-client memory
/// bounded.
pub(crate) fn forget_oldest<K: Ord + Clone, V>(
    map: &mut std::collections::BTreeMap<K, V>,
    at: impl Fn(&V) -> Millis,
) {
    let oldest = map
        .iter()
        .min_by_key(|(_, v)| at(v))
        .map(|(k, _)| k.clone());
    if let Some(k) = oldest {
        map.remove(&k);
    }
}

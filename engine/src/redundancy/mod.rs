//! Hot-standby redundancy (seed 002): single-sequencer groups, the signing guard that never
//! signs one height or round twice, the announcement a returning main makes, and the fenced
//! takeover's ballots.
pub mod announcement;
pub mod fenced;
pub mod group;
pub mod member_core;
pub mod signing_guard;

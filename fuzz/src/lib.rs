//! Fuzz entry points for everything that decodes bytes from outside: each must return, never
//! panic, whatever it is given. `tests/` drives them with proptest; a cargo-fuzz harness can
//! call the same functions.

use canon_engine::chain::block::Block;
use canon_engine::chain::tx::SignedTransaction;
use canon_engine::codec;
use canon_engine::net::wire::{Request, Response};

/// Decodes `data` as every externally supplied message type. Returns how many decoded.
pub fn decode_all(data: &[u8]) -> usize {
    [
        codec::decode::<Block>(data).is_ok(),
        codec::decode::<SignedTransaction>(data).is_ok(),
        codec::decode::<Request>(data).is_ok(),
        codec::decode::<Response>(data).is_ok(),
    ]
    .iter()
    .filter(|ok| **ok)
    .count()
}

/// Verifies a decoded block's signature and transactions the way a replayer would, on the
/// assumption that it extends nothing: it must be rejected, never panic.
pub fn verify_untrusted_block(data: &[u8]) -> bool {
    let Ok(block) = codec::decode::<Block>(data) else {
        return false;
    };
    block.transactions.iter().all(|t| t.signature_valid())
        && canon_engine::keys::recover_node_id(
            &block.header.hash().unwrap_or_default(),
            &block.signature,
        )
        .is_ok()
}

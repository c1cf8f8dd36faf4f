//! The settlement contract's events as canon reads them from L1 logs. Decoding is a pure
//! function of a log's topics and data (no provider, no production feature), so the L1 client
//! ([`crate::l1`]) and the fuzzer (`fuzz/`, target `settlement_events`) run the same code on
//! whatever an L1 node returns: an event of ours, or an error naming what did not decode.

use alloy_primitives::{Address, B256};
use alloy_sol_types::SolEvent;

// The events' layouts come from the committed artifact, as the client's bindings do, so the
// two cannot drift apart.
alloy_sol_types::sol!(SettlementAbi, "../contracts/Settlement.json");

/// An event the settlement contract emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettlementEvent {
    /// `commitBatch` took batch `number`.
    BatchCommitted {
        number: u64,
        first_height: u64,
        last_height: u64,
        state_root: B256,
        commitment: B256,
        epoch: u64,
    },
    /// Batch `batch_number` named a new attester set, which attests from the next batch on.
    ValidatorsChanged {
        batch_number: u64,
        validators: Vec<Address>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("a log without topics is no settlement event")]
    NoTopics,
    #[error("event {0} is none of the settlement contract's")]
    Unknown(B256),
    #[error("a {event} log does not decode: {reason}")]
    Malformed { event: &'static str, reason: String },
}

/// The event in a log of the settlement contract: its topics (the first is the event's
/// signature hash) and its ABI-encoded data, checked strictly (padding, lengths, offsets).
pub fn decode(topics: &[B256], data: &[u8]) -> Result<SettlementEvent, EventError> {
    let first = *topics.first().ok_or(EventError::NoTopics)?;
    let malformed = |event: &'static str| {
        move |e: alloy_sol_types::Error| EventError::Malformed {
            event,
            reason: e.to_string(),
        }
    };
    if first == SettlementAbi::BatchCommitted::SIGNATURE_HASH {
        let e =
            SettlementAbi::BatchCommitted::decode_raw_log_validate(topics.iter().copied(), data)
                .map_err(malformed("BatchCommitted"))?;
        return Ok(SettlementEvent::BatchCommitted {
            number: e.batchNumber,
            first_height: e.firstHeight,
            last_height: e.lastHeight,
            state_root: e.stateRoot,
            commitment: e.commitment,
            epoch: e.epoch,
        });
    }
    if first == SettlementAbi::ValidatorsChanged::SIGNATURE_HASH {
        let e =
            SettlementAbi::ValidatorsChanged::decode_raw_log_validate(topics.iter().copied(), data)
                .map_err(malformed("ValidatorsChanged"))?;
        return Ok(SettlementEvent::ValidatorsChanged {
            batch_number: e.batchNumber,
            validators: e.validators,
        });
    }
    Err(EventError::Unknown(first))
}

/// The log (topics, data) the contract emits for `event`: what [`decode`] reads back.
pub fn encode(event: &SettlementEvent) -> (Vec<B256>, Vec<u8>) {
    let log = match event.clone() {
        SettlementEvent::BatchCommitted {
            number,
            first_height,
            last_height,
            state_root,
            commitment,
            epoch,
        } => SettlementAbi::BatchCommitted {
            batchNumber: number,
            firstHeight: first_height,
            lastHeight: last_height,
            stateRoot: state_root,
            commitment,
            epoch,
        }
        .encode_log_data(),
        SettlementEvent::ValidatorsChanged {
            batch_number,
            validators,
        } => SettlementAbi::ValidatorsChanged {
            batchNumber: batch_number,
            validators,
        }
        .encode_log_data(),
    };
    (log.topics().to_vec(), log.data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;

    #[test]
    fn events_read_back_what_the_contract_wrote_and_name_what_they_are_not() {
        // The signatures restated: what Solidity hashes for each event.
        let committed = keccak256("BatchCommitted(uint64,uint64,uint64,bytes32,bytes32,uint64)");
        let changed = keccak256("ValidatorsChanged(uint64,address[])");
        for event in [
            SettlementEvent::BatchCommitted {
                number: 3,
                first_height: 21,
                last_height: 30,
                state_root: B256::repeat_byte(1),
                commitment: B256::repeat_byte(2),
                epoch: 4,
            },
            SettlementEvent::ValidatorsChanged {
                batch_number: 3,
                validators: vec![Address::repeat_byte(1), Address::repeat_byte(2)],
            },
        ] {
            let (topics, data) = encode(&event);
            assert!(topics[0] == committed || topics[0] == changed);
            // The batch number is indexed: the second topic, a word of its own.
            assert_eq!(topics[1], B256::with_last_byte(3));
            assert_eq!(decode(&topics, &data), Ok(event));
            // One byte short, or a padding byte set: refused by name.
            let short = decode(&topics, &data[..data.len() - 1]).unwrap_err();
            assert!(matches!(short, EventError::Malformed { .. }), "{short}");
            let mut dirty = data.clone();
            dirty[0] = 1;
            assert!(decode(&topics, &dirty).is_err());
        }
        assert_eq!(decode(&[], &[]), Err(EventError::NoTopics));
        let other = B256::repeat_byte(9);
        assert_eq!(decode(&[other], &[]), Err(EventError::Unknown(other)));
    }
}

//! The settlement contract on a real anvil: deployed with three consensus nodes registered, it
//! accepts a batch only as the next link of its hash chain, continuing the last range, at an
//! epoch not below the highest seen, with signatures from a majority of the registered nodes
//! over the commitment our engine computes. And the committed artifact is what the pinned solc
//! makes of the source, whenever that solc is installed.
#![cfg(feature = "production")]

use std::path::Path;
use std::time::Duration;

use alloy::primitives::{Bytes, B256};
use canon_engine::keys::{derived_key, SecretKey};
use canon_engine::settlement::batch::{
    address_of, attester_addresses, block_hashes_hash, Attestation, BatchHeader,
};
use canon_node::l1::{AnvilProcess, L1Error, ANVIL_DEV_KEY, L1};

fn validators() -> Vec<SecretKey> {
    (0..3).map(|i| derived_key("l1-contract-test", i)).collect()
}

fn batch(number: u64, previous: B256, first: u64, last: u64) -> BatchHeader {
    let hashes: Vec<B256> = (first..=last)
        .map(|h| B256::with_last_byte(h as u8))
        .collect();
    BatchHeader {
        number,
        previous,
        first_height: first,
        last_height: last,
        state_root: B256::repeat_byte(number as u8),
        block_hashes_hash: block_hashes_hash(&hashes),
        next_attesters: Vec::new(),
    }
}

fn attest(h: &BatchHeader, keys: &[SecretKey]) -> Vec<Attestation> {
    keys.iter().map(|k| Attestation::sign(h, k)).collect()
}

fn refused(r: Result<(), L1Error>, want: &str) {
    match r {
        Err(L1Error::Rejected { reason }) => {
            assert!(
                reason.contains(want),
                "refused with {reason}, expected {want}"
            )
        }
        other => panic!("expected the contract to refuse with {want}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_enforces_the_hash_chain_and_the_majority() {
    let anvil =
        AnvilProcess::start(0, None, None).expect("anvil (the README's test command installs it)");
    let l1 = L1::connect(&anvil.url, &SecretKey::from_hex(ANVIL_DEV_KEY).unwrap()).unwrap();
    l1.wait_ready(Duration::from_secs(20))
        .await
        .expect("anvil answers");
    let keys = validators();
    let addr = l1
        .deploy(keys.iter().map(|k| address_of(&k.node_id())).collect())
        .await
        .expect("deploy");

    let head = l1.head(addr).await.unwrap();
    assert_eq!((head.batch_number, head.height, head.epoch), (0, 0, 0));
    assert_eq!(head.commitment, B256::ZERO);

    // Our commitment is the contract's.
    let b1 = batch(1, B256::ZERO, 1, 10);
    assert_eq!(l1.commitment(addr, &b1).await.unwrap(), b1.commitment());

    // One of three is no majority; a stranger's signature counts for nothing.
    refused(
        l1.commit_batch(addr, &b1, &attest(&b1, &keys[..1]), 1)
            .await,
        "NotEnoughAttestations",
    );
    let stranger = derived_key("l1-contract-test", 99);
    refused(
        l1.commit_batch(addr, &b1, &attest(&b1, &[keys[0].clone(), stranger]), 1)
            .await,
        "UnknownAttester",
    );
    // One signature twice, or out of address order: refused, not counted twice.
    let one = Bytes::copy_from_slice(&keys[0].sign_hash(&b1.commitment()).0);
    refused(
        l1.commit_raw(addr, &b1, vec![one.clone(), one.clone()], 1)
            .await,
        "AttestersNotAscending",
    );
    let mut garbage = one.to_vec();
    garbage[10] ^= 0xff;
    garbage[64] = 5;
    refused(
        l1.commit_raw(addr, &b1, vec![Bytes::from(garbage)], 1)
            .await,
        "BadSignature",
    );
    // A signature over another batch's commitment recovers to nobody registered.
    let b_other = batch(1, B256::ZERO, 1, 11);
    refused(
        l1.commit_batch(addr, &b1, &attest(&b_other, &keys[..2]), 1)
            .await,
        "",
    );

    // Two of three: committed.
    l1.commit_batch(addr, &b1, &attest(&b1, &keys[..2]), 1)
        .await
        .expect("a majority commits batch 1");
    let head = l1.head(addr).await.unwrap();
    assert_eq!(
        (
            head.batch_number,
            head.height,
            head.epoch,
            head.commitment,
            head.state_root
        ),
        (1, 10, 1, b1.commitment(), b1.state_root)
    );

    // The same batch again, a skipped number, a wrong previous link, a gap or overlap in the
    // range, an empty range, a lower epoch: each refused by name.
    refused(
        l1.commit_batch(addr, &b1, &attest(&b1, &keys), 1).await,
        "NotNextBatch",
    );
    let b3 = batch(3, b1.commitment(), 11, 20);
    refused(
        l1.commit_batch(addr, &b3, &attest(&b3, &keys), 1).await,
        "NotNextBatch",
    );
    let wrong_prev = batch(2, B256::repeat_byte(7), 11, 20);
    refused(
        l1.commit_batch(addr, &wrong_prev, &attest(&wrong_prev, &keys), 1)
            .await,
        "PreviousCommitmentMismatch",
    );
    for (first, last, why) in [
        (12, 20, "RangeNotContinuous"),
        (10, 20, "RangeNotContinuous"),
        (11, 10, "EmptyRange"),
    ] {
        let b = batch(2, b1.commitment(), first, last);
        refused(l1.commit_batch(addr, &b, &attest(&b, &keys), 1).await, why);
    }
    let b2 = batch(2, b1.commitment(), 11, 20);
    refused(
        l1.commit_batch(addr, &b2, &attest(&b2, &keys), 0).await,
        "StaleEpoch",
    );

    // The next link, from all three and at a higher epoch: committed; epoch 1 is then stale.
    l1.commit_batch(addr, &b2, &attest(&b2, &keys), 2)
        .await
        .expect("batch 2");
    let b3 = batch(3, b2.commitment(), 21, 21);
    refused(
        l1.commit_batch(addr, &b3, &attest(&b3, &keys), 1).await,
        "StaleEpoch",
    );
    let head = l1.head(addr).await.unwrap();
    assert_eq!((head.batch_number, head.height, head.epoch), (2, 20, 2));
}

/// The chain replaced two of its three genesis members, one at a time; each batch that names a
/// new set is attested by the set L1 holds, and the named set attests from the next batch on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attester_set_follows_the_batches_that_name_one() {
    let anvil = AnvilProcess::start(0, None, None).expect("anvil");
    let l1 = L1::connect(&anvil.url, &SecretKey::from_hex(ANVIL_DEV_KEY).unwrap()).unwrap();
    l1.wait_ready(Duration::from_secs(20))
        .await
        .expect("anvil answers");
    let keys: Vec<SecretKey> = (0..5).map(|i| derived_key("l1-contract-test", i)).collect();
    let ids = |ks: &[usize]| -> Vec<_> { ks.iter().map(|&i| keys[i].node_id()).collect() };
    let signers =
        |ks: &[usize]| -> Vec<SecretKey> { ks.iter().map(|&i| keys[i].clone()).collect() };
    let addr = l1
        .deploy(attester_addresses(&ids(&[0, 1, 2])))
        .await
        .expect("deploy");

    // Batch 1 names {0, 1, 3} (node 2 replaced by node 3): our commitment is still the
    // contract's, and the genesis majority {0, 1} commits it.
    let mut b1 = batch(1, B256::ZERO, 1, 10);
    b1.next_attesters = attester_addresses(&ids(&[0, 1, 3]));
    assert_eq!(l1.commitment(addr, &b1).await.unwrap(), b1.commitment());
    refused(
        l1.commit_batch(addr, &b1, &attest(&b1, &signers(&[0, 3])), 1)
            .await,
        "UnknownAttester",
    );
    l1.commit_batch(addr, &b1, &attest(&b1, &signers(&[0, 1])), 1)
        .await
        .expect("the genesis majority commits the batch naming the new set");
    assert_eq!(
        l1.validator_set(addr).await.unwrap(),
        b1.next_attesters,
        "L1 holds the named set"
    );

    // Batch 2: the replaced node's signature no longer counts; the newcomer's does. It names
    // {1, 3, 4} (node 0 replaced by node 4).
    let mut b2 = batch(2, b1.commitment(), 11, 20);
    b2.next_attesters = attester_addresses(&ids(&[1, 3, 4]));
    refused(
        l1.commit_batch(addr, &b2, &attest(&b2, &signers(&[1, 2])), 1)
            .await,
        "UnknownAttester",
    );
    l1.commit_batch(addr, &b2, &attest(&b2, &signers(&[3, 0])), 1)
        .await
        .expect("the set batch 1 named commits batch 2");

    // Batch 3 needs two of {1, 3, 4}: no genesis majority can commit it any more.
    let b3 = batch(3, b2.commitment(), 21, 30);
    refused(
        l1.commit_batch(addr, &b3, &attest(&b3, &signers(&[0, 2])), 1)
            .await,
        "UnknownAttester",
    );
    refused(
        l1.commit_batch(addr, &b3, &attest(&b3, &signers(&[4])), 1)
            .await,
        "NotEnoughAttestations",
    );
    l1.commit_batch(addr, &b3, &attest(&b3, &signers(&[4, 3])), 1)
        .await
        .expect("two of the newest set");
    assert_eq!(
        l1.validator_set(addr).await.unwrap(),
        attester_addresses(&ids(&[1, 3, 4])),
        "a batch naming nobody keeps the set"
    );

    // A named set out of order (or with a zero address) is refused whole: L1 keeps its set.
    let mut b4 = batch(4, b3.commitment(), 31, 31);
    b4.next_attesters = attester_addresses(&ids(&[0, 1]));
    b4.next_attesters.reverse();
    refused(
        l1.commit_batch(addr, &b4, &attest(&b4, &signers(&[1, 3])), 1)
            .await,
        "BadNextValidator",
    );
    assert_eq!(l1.head(addr).await.unwrap().batch_number, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploying_needs_validators_and_a_reachable_l1() {
    let anvil = AnvilProcess::start(0, None, None).expect("anvil");
    let l1 = L1::connect(&anvil.url, &SecretKey::from_hex(ANVIL_DEV_KEY).unwrap()).unwrap();
    l1.wait_ready(Duration::from_secs(20))
        .await
        .expect("anvil answers");
    let err = l1.deploy(Vec::new()).await.expect_err("no validators");
    assert!(err.to_string().contains("NoValidators"), "{err}");
    let a = address_of(&validators()[0].node_id());
    let err = l1.deploy(vec![a, a]).await.expect_err("a duplicate");
    assert!(err.to_string().contains("BadValidator"), "{err}");
    drop(anvil);
    let err = l1
        .head(alloy::primitives::Address::ZERO)
        .await
        .expect_err("anvil is gone");
    assert!(matches!(err, L1Error::Unreachable { .. }), "{err:?}");
}

/// The committed artifact is what the pinned solc makes of the source (when solc-js is
/// installed under contracts/, as the README's test command does).
#[test]
fn the_artifact_matches_the_source() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts");
    if !dir.join("node_modules/solc").is_dir() {
        eprintln!("solc-js is not installed under contracts/ (npm install --prefix contracts): not recompiled");
        return;
    }
    let out = std::process::Command::new("node")
        .arg(dir.join("compile.js"))
        .output()
        .expect("run node contracts/compile.js");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read(dir.join("Settlement.json")).expect("the artifact");
    assert!(
        out.stdout == committed,
        "contracts/Settlement.json is stale: rebuild it with `node contracts/compile.js > contracts/Settlement.json`"
    );
}

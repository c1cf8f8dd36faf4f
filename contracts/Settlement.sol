// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// canon's L1 settlement: a hash chain of batch commitments. A batch is accepted only as the next
/// link of the chain, continuing the last block range, at an epoch not below the highest seen,
/// and attested by a majority of the consensus nodes' current set (secp256k1 signatures over
/// its commitment): L1 accepts only what the consensus agreed on. The set is the one registered
/// at deployment until a batch names a new one (the chain's membership changed): that batch is
/// attested by the old set, its commitment covers the new one, and the new set attests the
/// batches after it.
contract Settlement {
    /// The consensus nodes' addresses (keccak of their public keys): the deployment's, then
    /// each set a committed batch named.
    address[] private validators;
    mapping(address => bool) public isValidator;

    uint64 private lastBatch;
    uint64 private lastHeight;
    bytes32 private lastStateRoot;
    bytes32 private lastCommitment;
    uint64 private highestEpoch;

    event BatchCommitted(
        uint64 indexed batchNumber,
        uint64 firstHeight,
        uint64 lastHeight,
        bytes32 stateRoot,
        bytes32 commitment,
        uint64 epoch
    );
    event ValidatorsChanged(uint64 indexed batchNumber, address[] validators);

    error NoValidators();
    error BadValidator(address validator);
    error NotNextBatch(uint64 expected, uint64 got);
    error PreviousCommitmentMismatch(bytes32 expected, bytes32 got);
    error RangeNotContinuous(uint64 expectedFirst, uint64 got);
    error EmptyRange(uint64 firstHeight, uint64 lastHeight);
    error StaleEpoch(uint64 highest, uint64 got);
    error BadSignature(uint256 index);
    error UnknownAttester(address attester);
    /// Attesters must come in strictly ascending address order, so none counts twice.
    error AttestersNotAscending(uint256 index);
    error NotEnoughAttestations(uint256 valid, uint256 needed);
    /// A batch's next validators must be non-zero and strictly ascending.
    error BadNextValidator(uint256 index);

    constructor(address[] memory initialValidators) {
        if (initialValidators.length == 0) revert NoValidators();
        for (uint256 i = 0; i < initialValidators.length; i++) {
            address v = initialValidators[i];
            if (v == address(0) || isValidator[v]) revert BadValidator(v);
            isValidator[v] = true;
            validators.push(v);
        }
    }

    /// What the consensus nodes sign for a batch.
    function commitment(
        uint64 batchNumber,
        bytes32 previous,
        uint64 firstHeight,
        uint64 batchLastHeight,
        bytes32 stateRoot,
        bytes32 blockHashesHash,
        bytes32 nextValidatorsHash
    ) public pure returns (bytes32) {
        return keccak256(
            abi.encode(
                batchNumber, previous, firstHeight, batchLastHeight, stateRoot, blockHashesHash, nextValidatorsHash
            )
        );
    }

    /// What a commitment holds of a batch's next validators (empty: the set stays).
    function validatorsHash(address[] memory next) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(next));
    }

    function commitBatch(
        uint64 batchNumber,
        bytes32 previous,
        uint64 firstHeight,
        uint64 batchLastHeight,
        bytes32 stateRoot,
        bytes32 blockHashesHash,
        address[] calldata nextValidators,
        uint64 epoch,
        bytes[] calldata signatures
    ) external {
        if (batchNumber != lastBatch + 1) revert NotNextBatch(lastBatch + 1, batchNumber);
        if (previous != lastCommitment) revert PreviousCommitmentMismatch(lastCommitment, previous);
        if (firstHeight != lastHeight + 1) revert RangeNotContinuous(lastHeight + 1, firstHeight);
        if (batchLastHeight < firstHeight) revert EmptyRange(firstHeight, batchLastHeight);
        if (epoch < highestEpoch) revert StaleEpoch(highestEpoch, epoch);
        bytes32 c = commitment(
            batchNumber, previous, firstHeight, batchLastHeight, stateRoot, blockHashesHash, validatorsHash(nextValidators)
        );
        uint256 needed = validators.length / 2 + 1;
        address last = address(0);
        for (uint256 i = 0; i < signatures.length; i++) {
            address a = recover(c, signatures[i], i);
            if (a <= last) revert AttestersNotAscending(i);
            if (!isValidator[a]) revert UnknownAttester(a);
            last = a;
        }
        if (signatures.length < needed) revert NotEnoughAttestations(signatures.length, needed);
        lastBatch = batchNumber;
        lastHeight = batchLastHeight;
        lastStateRoot = stateRoot;
        lastCommitment = c;
        highestEpoch = epoch;
        emit BatchCommitted(batchNumber, firstHeight, batchLastHeight, stateRoot, c, epoch);
        if (nextValidators.length > 0) replaceValidators(batchNumber, nextValidators);
    }

    /// The set a committed batch named attests from the next batch on.
    function replaceValidators(uint64 batchNumber, address[] calldata next) private {
        for (uint256 i = 0; i < validators.length; i++) {
            isValidator[validators[i]] = false;
        }
        delete validators;
        address last = address(0);
        for (uint256 i = 0; i < next.length; i++) {
            if (next[i] <= last) revert BadNextValidator(i);
            isValidator[next[i]] = true;
            validators.push(next[i]);
            last = next[i];
        }
        emit ValidatorsChanged(batchNumber, next);
    }

    /// Where a restarting batcher resumes.
    function head()
        external
        view
        returns (uint64 batchNumber, uint64 height, bytes32 stateRoot, bytes32 lastCommit, uint64 epoch)
    {
        return (lastBatch, lastHeight, lastStateRoot, lastCommitment, highestEpoch);
    }

    function validatorSet() external view returns (address[] memory) {
        return validators;
    }

    /// A 65-byte signature (r, s, v with v 27/28 or 0/1) over `digest`, low s only.
    function recover(bytes32 digest, bytes calldata sig, uint256 index) private pure returns (address) {
        if (sig.length != 65) revert BadSignature(index);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := calldataload(sig.offset)
            s := calldataload(add(sig.offset, 32))
            v := byte(0, calldataload(add(sig.offset, 64)))
        }
        if (v < 27) v += 27;
        if (v != 27 && v != 28) revert BadSignature(index);
        if (uint256(s) > 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0) {
            revert BadSignature(index);
        }
        address a = ecrecover(digest, v, r, s);
        if (a == address(0)) revert BadSignature(index);
        return a;
    }
}

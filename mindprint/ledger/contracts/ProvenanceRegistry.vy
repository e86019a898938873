# pragma version ~=0.4.3
"""
@title mindprint provenance registry
@notice Operators anchor the Merkle root of a batch of accepted samples with the
        digest of the batch manifest (the manifest CID is CIDv1, dag-cbor, sha2-256 of
        that digest) and the batch's sample count. One storage slot per batch keeps an
        anchor under 50 gas per sample at 1024 samples per batch. The owner manages
        operators. Sample inclusion is checked on chain with a sorted-pair keccak256
        Merkle proof (snekmate / OpenZeppelin compatible).
"""

from snekmate.auth import ownable
from snekmate.utils import merkle_proof_verification

initializes: ownable

exports: (ownable.owner, ownable.transfer_ownership)

MAX_PROOF_LENGTH: constant(uint256) = 64


event OperatorSet:
    operator: indexed(address)
    enabled: bool


event Anchored:
    root: indexed(bytes32)
    operator: indexed(address)
    manifest_digest: bytes32
    sample_count: uint256


is_operator: public(HashMap[address, bool])
# root => block number << 192 | timestamp << 128 | sample count (one slot)
_anchors: HashMap[bytes32, uint256]


@deploy
def __init__():
    ownable.__init__()
    self.is_operator[msg.sender] = True
    log OperatorSet(operator=msg.sender, enabled=True)


@external
def set_operator(operator: address, enabled: bool):
    ownable._check_owner()
    assert operator != empty(address), "registry: zero address"
    self.is_operator[operator] = enabled
    log OperatorSet(operator=operator, enabled=enabled)


@external
def anchor(root: bytes32, manifest_digest: bytes32, sample_count: uint256):
    assert self.is_operator[msg.sender], "registry: caller is not an operator"
    assert root != empty(bytes32), "registry: empty root"
    assert manifest_digest != empty(bytes32), "registry: empty manifest"
    assert sample_count > 0 and sample_count < 2**128, "registry: bad sample count"
    assert self._anchors[root] == 0, "registry: root already anchored"
    self._anchors[root] = (block.number << 192) | (block.timestamp << 128) | sample_count
    log Anchored(root=root, operator=msg.sender, manifest_digest=manifest_digest, sample_count=sample_count)


@external
@view
def get_anchor(root: bytes32) -> (uint256, uint256, uint256):
    """
    @notice (block number, timestamp, sample count) of an anchored root; zeros if none.
    """
    packed: uint256 = self._anchors[root]
    return packed >> 192, (packed >> 128) & (2**64 - 1), packed & (2**128 - 1)


@external
@view
def is_anchored(root: bytes32) -> bool:
    return self._anchors[root] != 0


@external
@view
def verify_inclusion(root: bytes32, leaf: bytes32, proof: DynArray[bytes32, MAX_PROOF_LENGTH]) -> bool:
    if self._anchors[root] == 0:
        return False
    return merkle_proof_verification._verify(proof, root, leaf)

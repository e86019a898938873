# pragma version ~=0.4.3
"""
@title mindprint reward distributor
@notice One Merkle root of (epoch, account, amount) per epoch, published by an
        operator. Contributors claim with a proof; a claim mints the amount from the
        reward token (this contract is its minter). No double claim.
        Leaf = keccak256(keccak256(abi.encode(epoch, account, amount))).
"""

from snekmate.auth import ownable
from snekmate.utils import merkle_proof_verification

initializes: ownable

exports: (ownable.owner, ownable.transfer_ownership)


interface IMintable:
    def mint(owner: address, amount: uint256): nonpayable


MAX_PROOF_LENGTH: constant(uint256) = 64


event OperatorSet:
    operator: indexed(address)
    enabled: bool


event EpochPublished:
    epoch: indexed(uint256)
    root: bytes32
    total: uint256


event Claimed:
    epoch: indexed(uint256)
    account: indexed(address)
    amount: uint256


token: public(immutable(address))
is_operator: public(HashMap[address, bool])
epoch_root: public(HashMap[uint256, bytes32])
epoch_total: public(HashMap[uint256, uint256])
epoch_claimed: public(HashMap[uint256, uint256])
claimed: public(HashMap[uint256, HashMap[address, bool]])


@deploy
def __init__(token_: address):
    ownable.__init__()
    token = token_
    self.is_operator[msg.sender] = True


@external
def set_operator(operator: address, enabled: bool):
    ownable._check_owner()
    assert operator != empty(address), "distributor: zero address"
    self.is_operator[operator] = enabled
    log OperatorSet(operator=operator, enabled=enabled)


@external
def publish_epoch(epoch: uint256, root: bytes32, total: uint256):
    assert self.is_operator[msg.sender], "distributor: caller is not an operator"
    assert root != empty(bytes32), "distributor: empty root"
    assert self.epoch_root[epoch] == empty(bytes32), "distributor: epoch already published"
    self.epoch_root[epoch] = root
    self.epoch_total[epoch] = total
    log EpochPublished(epoch=epoch, root=root, total=total)


@external
def claim(epoch: uint256, account: address, amount: uint256, proof: DynArray[bytes32, MAX_PROOF_LENGTH]):
    root: bytes32 = self.epoch_root[epoch]
    assert root != empty(bytes32), "distributor: unknown epoch"
    assert not self.claimed[epoch][account], "distributor: already claimed"
    leaf: bytes32 = keccak256(keccak256(abi_encode(epoch, account, amount)))
    assert merkle_proof_verification._verify(proof, root, leaf), "distributor: invalid proof"
    assert self.epoch_claimed[epoch] + amount <= self.epoch_total[epoch], "distributor: exceeds epoch total"
    self.claimed[epoch][account] = True
    self.epoch_claimed[epoch] += amount
    extcall IMintable(token).mint(account, amount)
    log Claimed(epoch=epoch, account=account, amount=amount)

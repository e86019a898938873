# pragma version ~=0.4.3
"""
@title mindprint device registry
@notice Binds a device public key (Ed25519, 32 bytes) to a contributor address. The
        binding is authorised by the contributor's EIP-712 signature over
        BindDevice(bytes32 device,address contributor,uint256 nonce,uint256 deadline),
        so a relayer (the platform) may submit it. The contributor revokes with a call
        or with a signed RevokeDevice(bytes32 device,uint256 nonce,uint256 deadline).
"""

from snekmate.utils import ecdsa
from snekmate.utils import eip712_domain_separator

initializes: eip712_domain_separator

exports: eip712_domain_separator.eip712Domain

BIND_TYPEHASH: constant(bytes32) = keccak256(
    "BindDevice(bytes32 device,address contributor,uint256 nonce,uint256 deadline)"
)
REVOKE_TYPEHASH: constant(bytes32) = keccak256("RevokeDevice(bytes32 device,uint256 nonce,uint256 deadline)")


event DeviceBound:
    device: indexed(bytes32)
    contributor: indexed(address)


event DeviceRevoked:
    device: indexed(bytes32)
    contributor: indexed(address)


device_owner: public(HashMap[bytes32, address])
revoked: public(HashMap[bytes32, bool])
nonces: public(HashMap[address, uint256])


@deploy
def __init__():
    eip712_domain_separator.__init__("mindprint DeviceRegistry", "1")


@external
@view
def DOMAIN_SEPARATOR() -> bytes32:
    return eip712_domain_separator._domain_separator_v4()


@external
def bind(device: bytes32, contributor: address, deadline: uint256, signature: Bytes[65]):
    assert block.timestamp <= deadline, "devices: signature expired"
    assert device != empty(bytes32), "devices: empty device key"
    assert contributor != empty(address), "devices: zero address"
    assert not self.revoked[device], "devices: device was revoked"
    current: address = self.device_owner[device]
    assert current == empty(address) or current == contributor, "devices: bound to another contributor"
    nonce: uint256 = self.nonces[contributor]
    digest: bytes32 = eip712_domain_separator._hash_typed_data_v4(
        keccak256(abi_encode(BIND_TYPEHASH, device, contributor, nonce, deadline))
    )
    assert ecdsa._recover_sig(digest, signature) == contributor, "devices: invalid signature"
    self.nonces[contributor] = nonce + 1
    self.device_owner[device] = contributor
    log DeviceBound(device=device, contributor=contributor)


@internal
def _revoke(device: bytes32, contributor: address):
    assert self.device_owner[device] == contributor, "devices: not the device's contributor"
    assert not self.revoked[device], "devices: already revoked"
    self.revoked[device] = True
    log DeviceRevoked(device=device, contributor=contributor)


@external
def revoke(device: bytes32):
    self._revoke(device, msg.sender)


@external
def revoke_by_signature(device: bytes32, deadline: uint256, signature: Bytes[65]):
    assert block.timestamp <= deadline, "devices: signature expired"
    contributor: address = self.device_owner[device]
    assert contributor != empty(address), "devices: unknown device"
    nonce: uint256 = self.nonces[contributor]
    digest: bytes32 = eip712_domain_separator._hash_typed_data_v4(
        keccak256(abi_encode(REVOKE_TYPEHASH, device, nonce, deadline))
    )
    assert ecdsa._recover_sig(digest, signature) == contributor, "devices: invalid signature"
    self.nonces[contributor] = nonce + 1
    self._revoke(device, contributor)


@external
@view
def is_active(device: bytes32, contributor: address) -> bool:
    return self.device_owner[device] == contributor and contributor != empty(address) and not self.revoked[device]

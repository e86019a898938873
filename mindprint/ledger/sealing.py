"""Sealing a signed session for IPFS: encrypted raw leaves under a DAG-CBOR manifest.

Every block of a session's CAR (header, chunks, signatures) is sealed with the session's
data key into an envelope stored as a **raw leaf**; a DAG-CBOR **sealed-session
manifest** links the envelopes and records, for each, the CID of the plaintext block it
holds (what the device signed). A manifest built by the platform for a streamed session
carries each block's device signature inline (``signature`` in the entry: 64 bytes that
reveal nothing the CID does not) instead of a sealed signature block; opening it yields
the same blocks, signature blocks included, in the device's order. IPFS sees envelopes and CIDs only; whoever holds the
data key opens each envelope, re-hashes the plaintext against its recorded CID, and so
checks the device signatures through the encryption.

This module handles bytes and CIDs; it never decodes EEG samples into arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

from multiformats import CID

from mindprint.core.errors import LedgerError
from mindprint.core.ipld import car_header, car_section, cid_for_block, cid_from_bytes, read_car, signature_block
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.crypto import open_payload, seal_payload

SEALED_TYPE = "mindprint/sealed-session/v1"

__all__ = ["SealedBlock", "envelope_aad", "open_sealed_car", "open_sealed_session", "seal_session", "sealed_manifest"]


@dataclass(frozen=True, slots=True)
class SealedBlock:
    """A plaintext block recovered from its envelope (CID re-checked)."""

    cid: CID
    data: bytes


def envelope_aad(session: str, cid: CID) -> bytes:
    """Associated data of a block's envelope: binds it to its session and plaintext CID."""
    return session.encode() + b"/" + bytes(cid)


_aad = envelope_aad


def seal_session(car: bytes, session: str, data_key: bytes, store: Blockstore) -> CID:
    """Seal every block of a session CAR into ``store``; returns the manifest's CID.

    Raises
    ------
    LedgerError
        If the CAR is truncated or a block does not match its CID.
    """
    contents = read_car(car)
    if contents.tail_bytes:
        raise LedgerError(f"session CAR is truncated at byte {contents.tail_offset}; resume or verify it first")
    if not contents.sections:
        raise LedgerError("session CAR holds no blocks")
    entries = []
    for section in contents.sections:
        if cid_for_block(section.block, section.cid.codec.name) != section.cid:
            raise LedgerError(f"block {section.cid} does not match its CID; refusing to seal altered data")
        envelope = seal_payload(data_key, section.block, _aad(session, section.cid))
        # the plaintext CID is kept as bytes, not as an IPLD link: no node should try to fetch it
        entries.append({"block": bytes(section.cid), "sealed": store.put(envelope, "raw")})
    return sealed_manifest(store, session, list(contents.roots), entries)


def sealed_manifest(store: Blockstore, session: str, roots: list[CID], entries: list[dict[str, object]]) -> CID:
    """Store a sealed-session manifest: ``entries`` are ``{block: plaintext CID bytes, sealed: envelope CID}``."""
    return store.put_node(
        {
            "type": SEALED_TYPE,
            "session": session,
            "roots": [bytes(root) for root in roots],
            "blocks": entries,
            "cipher": "chacha20-poly1305",
        }
    )


def _open(manifest: CID | str, data_key: bytes, store: Blockstore) -> tuple[list[CID], list[SealedBlock]]:
    node = store.get_node(manifest)
    if not isinstance(node, dict) or node.get("type") != SEALED_TYPE:
        raise LedgerError(f"{manifest} is not a sealed-session manifest")
    session = str(node["session"])
    blocks = []
    for entry in node["blocks"]:
        cid = cid_from_bytes(bytes(entry["block"]))
        data = open_payload(data_key, store.get(entry["sealed"]), _aad(session, cid))
        if cid_for_block(data, cid.codec.name) != cid:
            raise LedgerError(f"sealed block {cid} decrypts to different bytes")
        blocks.append(SealedBlock(cid, data))
        if "signature" in entry:  # the device's signature over the block, carried in the manifest
            signed = signature_block(cid, bytes(entry["signature"]))
            blocks.append(SealedBlock(cid_for_block(signed), signed))
    return [cid_from_bytes(bytes(root)) for root in node["roots"]], blocks


def open_sealed_session(manifest: CID | str, data_key: bytes, store: Blockstore) -> list[SealedBlock]:
    """Decrypt every block of a sealed session, verifying each against its CID."""
    return _open(manifest, data_key, store)[1]


def open_sealed_car(manifest: CID | str, data_key: bytes, store: Blockstore) -> tuple[bytes, list[SealedBlock]]:
    """The session CAR rebuilt from its envelopes (roots and blocks in the device's order), and its blocks."""
    roots, blocks = _open(manifest, data_key, store)
    return car_header(roots) + b"".join(car_section(b.cid, b.data) for b in blocks), blocks

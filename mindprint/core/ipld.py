"""DAG-CBOR blocks, CIDv1 and CARv1 framing.

Blocks are encoded with the ``dag-cbor`` reference library and addressed with CIDv1
(dag-cbor codec, sha2-256), exactly what an IPFS node computes for the same bytes.
CARv1 framing is written here because sessions are append-only CAR files: a header
naming the root, then ``varint(len(cid) + len(block)) || cid || block`` sections.

This module sees bytes and plain Python values only, never EEG arrays.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cbor2
import dag_cbor
from multiformats import CID, multibase, multicodec, multihash, varint

from mindprint.core.errors import SessionFormatError

__all__ = [
    "CID",
    "CarSection",
    "car_header",
    "car_section",
    "cid_for_block",
    "cid_from_bytes",
    "cid_text",
    "decode_block",
    "decode_known_block",
    "encode_block",
    "iter_car_sections",
    "raw_digest",
]

DAG_CBOR = "dag-cbor"
RAW = "raw"


def encode_block(value: Any) -> bytes:
    """Encode ``value`` as canonical DAG-CBOR bytes."""
    return bytes(dag_cbor.encode(value))


def decode_block(data: bytes) -> Any:
    """Decode DAG-CBOR bytes (raises ``SessionFormatError`` on malformed input)."""
    try:
        return dag_cbor.decode(data)
    except Exception as err:  # dag_cbor raises several unrelated exception types
        raise SessionFormatError(f"not valid DAG-CBOR: {err}") from err


# multiformats validates argument types at run time on every call (~100 µs per CID); the
# CIDs this project makes are all CIDv1 + sha2-256 of two codecs, so they are built with
# the constructor that CID.decode itself ends in, from pre-fetched codec objects.
_BASE32 = multibase.get("base32")
_SHA2_256 = multihash.get("sha2-256")
_CODECS = {code: multicodec.get(code=code) for code in (0x71, 0x55)}  # dag-cbor, raw
_CODE_OF = {codec.name: code for code, codec in _CODECS.items()}


def _v1_sha256(code: int, multihash_bytes: bytes, base: Any = _BASE32) -> CID:
    return CID._new_instance(CID, base, 1, _CODECS[code], _SHA2_256, multihash_bytes)


def _fast_v1(data: bytes, base: Any) -> CID | None:
    """The CID of binary ``data`` if it is a CIDv1 + sha2-256 of our two codecs, else None."""
    if len(data) == 36 and data[0] == 1 and data[1] in _CODECS and data[2:4] == b"\x12\x20":
        return _v1_sha256(data[1], bytes(data[2:]), base)
    return None


def cid_for_block(data: bytes, codec: str = DAG_CBOR) -> CID:
    """Return the CIDv1 (sha2-256, base32) of a block's bytes."""
    code = _CODE_OF.get(codec)
    if code is None:
        return CID("base32", 1, codec, multihash.digest(data, "sha2-256"))
    return _v1_sha256(code, b"\x12\x20" + hashlib.sha256(data).digest())


def cid_text(cid: CID) -> str:
    """The CIDv1's base32 text (what ``str`` gives for base32), without multibase's overhead."""
    if cid.version != 1:
        return str(cid)
    return "b" + base64.b32encode(bytes(cid)).decode("ascii").lower().rstrip("=")


def raw_digest(cid: CID) -> bytes:
    """The hash a CID names, without its multihash prefix (``multihash.unwrap(cid.digest)``,
    which validates its argument types on every call: ~0.2 ms)."""
    digest = bytes(cid.digest)
    if len(digest) == 34 and digest[:2] == b"\x12\x20":  # sha2-256, 32 bytes: all of ours
        return digest[2:]
    return bytes(multihash.unwrap(digest))


@lru_cache(maxsize=1 << 16)
def cid_from_bytes(data: bytes) -> CID:
    """Decode a binary CID (base32 for display); equal to ``CID.decode(data)``, cached."""
    fast = _fast_v1(data, _BASE32)
    if fast is not None:
        return fast
    cid = CID.decode(bytes(data))
    return cid.set(base="base32") if cid.version == 1 else cid


_BASE58BTC = multibase.get("base58btc")


@lru_cache(maxsize=1 << 16)
def _decode_link(data: bytes) -> CID:
    """``CID.decode(data)`` (base58btc for display, as multiformats gives), without its
    run-time argument validation for CIDv1 + sha2-256 of our two codecs."""
    return _fast_v1(data, _BASE58BTC) or CID.decode(bytes(data))


class _FastCidDecoding:
    """Stands in for ``multiformats.CID`` inside ``dag_cbor.decoding``, whose only use of it is
    ``CID.decode(bytes)`` on each tag-42 link: :func:`_decode_link` gives the same CID without
    multiformats' run-time argument validation (it built ~2,000 unused error messages per
    submission, ~12 ms). Anything it does not recognise goes to ``CID.decode``."""

    decode = staticmethod(_decode_link)


def _install_fast_cid_decoding() -> None:
    from dag_cbor import decoding

    if getattr(decoding, "CID", None) is CID:  # the dag-cbor we pin; leave any other alone
        setattr(decoding, "CID", _FastCidDecoding)  # noqa: B010 - a module global, not an attribute of ours


_install_fast_cid_decoding()


def _link_tag(_decoder: Any, tag: cbor2.CBORTag) -> Any:
    if tag.tag == 42 and isinstance(tag.value, bytes) and tag.value[:1] == b"\x00":
        return _decode_link(tag.value[1:])
    raise cbor2.CBORDecodeError(f"tag {tag.tag} is not DAG-CBOR")


def decode_known_block(data: bytes) -> Any:
    """Decode a block this platform has already decoded strictly with :func:`decode_block`
    (a chunk it verified on upload, re-read from its blockstore): cbor2's C decoder, tag-42
    links as CIDs, the same values — 10 µs for an 8 kB Cyton chunk where ``dag_cbor`` takes
    153 µs. Not for bytes from outside: it does not enforce DAG-CBOR's canonical form, and
    it decodes the tags cbor2 knows (dates, bignums) where DAG-CBOR allows only 42."""
    try:
        return cbor2.loads(data, tag_hook=_link_tag)
    except Exception as err:  # cbor2 raises several types
        raise SessionFormatError(f"not valid DAG-CBOR: {err}") from err


def car_header(roots: list[CID]) -> bytes:
    """Return the CARv1 header (length-prefixed DAG-CBOR ``{roots, version: 1}``)."""
    header = encode_block({"roots": roots, "version": 1})
    return bytes(varint.encode(len(header))) + header


def car_section(cid: CID, block: bytes) -> bytes:
    """Return one CARv1 section for ``block`` addressed by ``cid``."""
    cid_bytes = bytes(cid)
    return bytes(varint.encode(len(cid_bytes) + len(block))) + cid_bytes + block


@dataclass(frozen=True, slots=True)
class CarSection:
    """One section of a CAR file as found on disk.

    ``offset`` is the byte offset of the section's length prefix in the file; ``cid``
    is the CID *stored* in the section (not yet checked against ``block``).
    """

    offset: int
    end: int
    cid: CID
    block: bytes


@dataclass(frozen=True, slots=True)
class CarContents:
    """Parsed CAR file: roots, well-formed sections and any unreadable tail."""

    roots: list[CID]
    sections: list[CarSection]
    tail_offset: int
    tail_bytes: int
    tail_reason: str | None


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise EOFError("varint runs past end of file")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 9 bytes")


def _split_cid(section: bytes) -> tuple[CID, int]:
    # CIDv1: varint version, varint codec, varint hash code, varint digest length, digest.
    view = memoryview(section)
    pos = 0
    fields = []
    for _ in range(4):
        value, pos = _read_varint(view, pos)
        fields.append(value)
    if fields[0] != 1:
        raise ValueError(f"unsupported CID version {fields[0]}")
    end = pos + fields[3]
    if end > len(section):
        raise ValueError("CID digest runs past the section")
    try:
        return cid_from_bytes(bytes(section[:end])), end
    except (KeyError, TypeError, ValueError) as err:  # multiformats: unknown codec or hash
        raise ValueError(f"not a valid CID: {err}") from err


def iter_car_sections(data: bytes) -> Iterator[CarSection]:
    """Yield the well-formed sections of a CARv1 byte string (see :func:`read_car`)."""
    yield from read_car(data).sections


def read_car(data: bytes) -> CarContents:
    """Parse a CARv1 file, tolerating a truncated or garbled tail.

    A process killed mid-write leaves a partial last section: parsing stops there and
    the tail is reported (offset, size, reason) instead of raising, so everything
    written before the crash stays readable.

    Raises
    ------
    SessionFormatError
        If the header itself is unreadable.
    """
    view = memoryview(data)
    try:
        header_len, pos = _read_varint(view, 0)
        header = decode_block(bytes(view[pos : pos + header_len]))
    except (EOFError, ValueError, SessionFormatError) as err:
        raise SessionFormatError(f"unreadable CAR header: {err}") from err
    if not isinstance(header, dict) or header.get("version") != 1:
        raise SessionFormatError("CAR header is not a CARv1 header")
    roots = list(header.get("roots", []))
    pos += header_len
    sections: list[CarSection] = []
    reason: str | None = None
    start = pos
    while pos < len(data):
        start = pos
        try:
            length, body = _read_varint(view, pos)
            if length == 0 or body + length > len(data):
                raise EOFError(f"section of {length} bytes runs past end of file")
            raw = bytes(view[body : body + length])
            cid, cid_end = _split_cid(raw)
        except (EOFError, ValueError) as err:
            reason = str(err)
            break
        sections.append(CarSection(offset=start, end=body + length, cid=cid, block=raw[cid_end:]))
        pos = body + length
    else:
        start = len(data)
    return CarContents(
        roots=roots,
        sections=sections,
        tail_offset=start,
        tail_bytes=len(data) - start,
        tail_reason=reason,
    )


SIGNATURE_TYPE = "mindprint/signature/v1"


def signature_block(cid: CID, signature: bytes) -> bytes:
    """The DAG-CBOR block recording a device's Ed25519 signature over ``cid`` (session files, manifests)."""
    return encode_block({"type": SIGNATURE_TYPE, "signs": cid, "alg": "ed25519", "signature": signature})

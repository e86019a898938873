"""CIDs, DAG-CBOR and CAR framing: known answers and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiformats import CID

from mindprint.core.ipld import car_header, car_section, cid_for_block, encode_block, read_car


def test_empty_map_has_the_cid_every_ipfs_implementation_computes() -> None:
    # `ipfs dag put --input-codec dag-json <<< '{}'` prints this CID.
    assert str(cid_for_block(encode_block({}))) == "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"


def test_raw_codec_cid_of_empty_bytes() -> None:
    # sha2-256 of b"" under the raw codec, as `ipfs block put --cid-codec raw` reports it.
    assert str(cid_for_block(b"", "raw")) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


blocks = st.lists(
    st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=20), max_size=4),
    min_size=1,
    max_size=6,
)


@given(blocks)
def test_car_round_trip(values: list[dict]) -> None:
    encoded = [encode_block(v) for v in values]
    cids = [cid_for_block(b) for b in encoded]
    data = car_header(cids[:1]) + b"".join(car_section(c, b) for c, b in zip(cids, encoded, strict=True))
    contents = read_car(data)
    assert contents.roots == cids[:1]
    assert [s.cid for s in contents.sections] == cids
    assert [s.block for s in contents.sections] == encoded
    assert contents.tail_bytes == 0


@given(blocks, st.data())
def test_truncated_car_keeps_every_whole_section(values: list[dict], data: st.DataObject) -> None:
    encoded = [encode_block(v) for v in values]
    cids = [cid_for_block(b) for b in encoded]
    head = car_header(cids[:1])
    sections = [car_section(c, b) for c, b in zip(cids, encoded, strict=True)]
    whole = head + b"".join(sections)
    cut = data.draw(st.integers(min_value=len(head), max_value=len(whole)))
    contents = read_car(whole[:cut])
    ends, total = [], len(head)
    for section in sections:
        total += len(section)
        ends.append(total)
    complete = sum(1 for end in ends if end <= cut)
    assert len(contents.sections) == complete
    assert contents.tail_offset + contents.tail_bytes == cut


@pytest.mark.parametrize("codec", ["dag-cbor", "raw", "dag-pb", "dag-json"])
def test_fast_cids_equal_multiformats(codec: str) -> None:
    """The fast constructors give exactly multiformats' CIDs (value, text, bytes, codec)."""
    import os

    from multiformats import multihash

    from mindprint.core.ipld import cid_from_bytes, cid_text, raw_digest

    data = os.urandom(257)
    reference = CID("base32", 1, codec, multihash.digest(data, "sha2-256"))
    assert cid_text(reference) == str(reference)
    for made in (cid_for_block(data, codec), cid_from_bytes(bytes(reference))):
        assert made == reference and str(made) == str(reference) and bytes(made) == bytes(reference)
        assert made.codec.name == codec and made.hashfun.name == "sha2-256" and made.version == 1
    v0 = CID("base58btc", 0, "dag-pb", multihash.digest(data, "sha2-256"))
    assert cid_from_bytes(bytes(v0)) == v0 and cid_text(v0) == str(v0)
    # the hash a CID names, as multihash.unwrap gives it: sha2-256 directly, others through it
    longer = CID("base32", 1, codec, multihash.digest(data, "sha2-512"))
    for cid in (reference, v0, longer):
        assert raw_digest(cid) == bytes(multihash.unwrap(cid.digest))
    assert len(raw_digest(reference)) == 32 and len(raw_digest(longer)) == 64


def test_fast_cid_decoding_gives_what_multiformats_gives() -> None:
    """decode_block's tag-42 links are built without multiformats' validation: the same CIDs,
    for the fast path (CIDv1, sha2-256, dag-cbor/raw) and everything else (CIDv0, other
    codecs and hashes), and malformed links are still refused."""
    import dag_cbor
    from multiformats import multihash

    from mindprint.core.errors import SessionFormatError
    from mindprint.core.ipld import cid_for_block, decode_block, encode_block

    links = [
        cid_for_block(b"x"),
        cid_for_block(b"y", "raw"),
        CID("base32", 1, "dag-json", multihash.digest(b"z", "sha2-512")),
        CID("base58btc", 0, "dag-pb", multihash.digest(b"w", "sha2-256")),
    ]
    block = encode_block({"links": links, "n": 1.5, "nested": {"link": links[0]}})
    decoded = decode_block(block)
    assert decoded["links"] == links and decoded["nested"]["link"] == links[0]
    assert [str(c) for c in decoded["links"]] == [str(CID.decode(bytes(c))) for c in links]
    for link in decoded["links"]:
        assert isinstance(link, CID)
    assert encode_block(decoded) == block
    bad = bytearray(block)
    where = bytes(block).index(bytes(links[0]))
    bad[where] ^= 0xFF  # no longer a CID version
    with pytest.raises(SessionFormatError):
        decode_block(bytes(bad))
    del dag_cbor


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64) + 1, 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.binary(max_size=16)
    | st.sampled_from([cid_for_block(b"x"), cid_for_block(b"y", "raw")]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(values)
def test_known_blocks_decode_as_the_strict_decoder_does(value: object) -> None:
    """The C decoder for blocks already decoded strictly once gives the same values, links as
    the same CIDs (text included)."""
    from mindprint.core.ipld import decode_block, decode_known_block

    block = encode_block(value)
    strict, known = decode_block(block), decode_known_block(block)
    assert known == strict
    assert repr(known) == repr(strict)  # same types all the way down (CID, bytes, float, ...)


def test_known_block_decoding_refuses_what_is_not_dag_cbor() -> None:
    """An unknown tag, a truncated map, empty bytes: a clear error (a corrupted blockstore file
    must not decode to something)."""
    import cbor2

    from mindprint.core.errors import SessionFormatError
    from mindprint.core.ipld import decode_known_block

    for bad in (cbor2.dumps(cbor2.CBORTag(99, 5)), b"\xa1", b""):
        with pytest.raises(SessionFormatError):
            decode_known_block(bad)

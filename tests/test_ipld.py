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

    from mindprint.core.ipld import cid_from_bytes, cid_text

    data = os.urandom(257)
    reference = CID("base32", 1, codec, multihash.digest(data, "sha2-256"))
    assert cid_text(reference) == str(reference)
    for made in (cid_for_block(data, codec), cid_from_bytes(bytes(reference))):
        assert made == reference and str(made) == str(reference) and bytes(made) == bytes(reference)
        assert made.codec.name == codec and made.hashfun.name == "sha2-256" and made.version == 1
    v0 = CID("base58btc", 0, "dag-pb", multihash.digest(data, "sha2-256"))
    assert cid_from_bytes(bytes(v0)) == v0 and cid_text(v0) == str(v0)

"""Property-based fuzzing of what schemathesis cannot generate: DAG-CBOR sample blocks,
session CARs and chunk envelopes. Whatever the bytes, the answer is a clean error (a
``MindprintError`` in the library, a 4xx problem+json over HTTP) — never a crash or a 5xx."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multiformats import CID

from mindprint.core.errors import MindprintError
from mindprint.core.ipld import encode_block
from mindprint.device.session import SESSION_FILE, verify_session
from mindprint.protocol.formats import SampleError, SampleValue

from .test_hardening import GOOD

CID0 = CID.decode("bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64) + 1, max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.binary(max_size=40),
    st.just(CID0),
)
values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
# samples that look almost right: every field of a good one, some replaced by anything
near_samples = st.fixed_dictionaries({}, optional={k: st.one_of(st.just(v), values) for k, v in GOOD.items()})


@given(value=st.one_of(values, near_samples))
@settings(max_examples=400, derandomize=True, deadline=None)
def test_sample_parser_raises_only_sample_errors(value: object) -> None:
    try:
        parsed = SampleValue.parse(value)
    except SampleError:
        return
    assert 1 <= parsed.task < 2**31 and 0 <= parsed.start < parsed.stop and parsed.chunks


@given(data=st.binary(max_size=2000))
@settings(
    max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_session_verification_reports_garbage_as_issues(tmp_path: Path, data: bytes) -> None:
    (tmp_path / SESSION_FILE).write_bytes(data)
    report = verify_session(tmp_path)  # never raises: garbage is an issue in the report
    assert not report.ok or data


@given(cut=st.integers(min_value=0, max_value=10_000), flip=st.integers(min_value=0, max_value=10_000))
@settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_damaged_real_sessions_are_reported_not_crashed(
    tmp_path_factory: pytest.TempPathFactory, cut: int, flip: int
) -> None:
    from mindprint.device.keys import DeviceKey

    from .test_samples import real_session

    base = tmp_path_factory.getbasetemp() / "fuzz-session"
    if not base.exists():
        real_session(base, DeviceKey.generate(), seconds=3)
    data = bytearray((base / SESSION_FILE).read_bytes())
    data = data[: max(1, len(data) - cut)]
    data[flip % len(data)] ^= 0x40
    target = tmp_path_factory.mktemp("damaged")
    (target / SESSION_FILE).write_bytes(bytes(data))
    try:
        report = verify_session(target)
    except MindprintError:
        return
    assert report.issues or report.warnings or cut == 0


@pytest.fixture(scope="module")
def platform_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, str, str]]:
    from eth_account import Account
    from fastapi.testclient import TestClient

    from mindprint.api.app import create_app

    from .test_api import _settings, sign_in
    from .test_api_submissions import _bind, _stream
    from .test_samples import real_session

    tmp = tmp_path_factory.mktemp("fuzz-platform")
    app = create_app()
    config = _settings(tmp, data_dir=tmp / "platform")
    app.state.settings = config
    with TestClient(app, raise_server_exceptions=False) as client:
        from mindprint.device.keys import DeviceKey

        wallet, key = Account.create(), DeviceKey.generate()
        token = sign_in(client, wallet)
        _bind(client, token, wallet, key)
        session = real_session(tmp / "s", key, seconds=2)
        state = _stream(client, token, session)
        yield client, token, str(state["session"])


@given(
    envelope=st.binary(max_size=600),
    cid=st.one_of(st.text(max_size=70), st.just(str(CID0))),
    signature=st.sampled_from(["00" * 64, "ff" * 64]),
    seq=st.integers(min_value=0, max_value=2**31 - 1),
)
@settings(max_examples=120, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_chunk_uploads_of_anything_are_4xx(
    platform_client, envelope: bytes, cid: str, signature: str, seq: int
) -> None:  # type: ignore[no-untyped-def]
    client, token, session = platform_client
    body = {"cid": cid, "signature": signature, "envelope": base64.b64encode(envelope).decode()}
    answer = client.put(f"/sessions/{session}/chunks/{seq}", json=body, headers={"Authorization": f"Bearer {token}"})
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)


@given(value=st.one_of(values, near_samples))
@settings(max_examples=120, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_submissions_of_any_block_are_4xx(platform_client, value: object) -> None:  # type: ignore[no-untyped-def]
    client, token, _ = platform_client
    body = {
        "sample": base64.b64encode(encode_block(value)).decode(),
        "device_signature": "00" * 64,
        "wallet_signature": "0x" + "00" * 65,
    }
    answer = client.post("/submissions", json=body, headers={"Authorization": f"Bearer {token}"})
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mindprint.core.errors import KeyStoreError
from mindprint.device.keys import DeviceKey, verify_signature


def test_key_file_is_private_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "home" / "device_key.pem"
    key = DeviceKey.generate()
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = DeviceKey.load(path)
    assert loaded.public_key == key.public_key
    assert verify_signature(key.public_key, loaded.sign(b"msg"), b"msg")
    assert not verify_signature(key.public_key, loaded.sign(b"msg"), b"other")


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    DeviceKey.generate().save(path)
    with pytest.raises(KeyStoreError, match="refusing to overwrite"):
        DeviceKey.generate().save(path)


def test_world_readable_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    DeviceKey.generate().save(path)
    path.chmod(0o644)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        DeviceKey.load(path)


def test_missing_key_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="mindprint device init"):
        DeviceKey.load(tmp_path / "nope.pem")


def test_repr_never_shows_the_private_key() -> None:
    key = DeviceKey.generate()
    assert "PRIVATE" not in repr(key) and key.device_id[:16] in repr(key)

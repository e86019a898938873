"""Shared platform secrets: `mindprint platform init` writes them once; every process of one
platform reads them, so a token one replica issues is accepted by another."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from typer.testing import CliRunner

from mindprint.api.auth import issue_token, read_token
from mindprint.api.settings import ApiSettings
from mindprint.cli import app
from mindprint.core.errors import ConfigurationError, KeyStoreError
from mindprint.platform.secrets import PlatformSecrets, resolve_secrets

from .services import mindprint_server, sign_in

runner = CliRunner()


def test_init_writes_once(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    first = runner.invoke(app, ["platform", "init", "--secrets-file", str(path)])
    assert first.exit_code == 0, first.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = PlatformSecrets.load(path)
    assert len(loaded.platform_key) == 32 and loaded.token_secret != loaded.pseudonym_secret
    again = runner.invoke(app, ["platform", "init", "--secrets-file", str(path)])
    assert again.exit_code == 2 and "never overwritten" in again.output
    assert PlatformSecrets.load(path) == loaded


def test_sources_and_their_order(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    PlatformSecrets.generate().save(path)
    shared = PlatformSecrets.load(path)
    a = ApiSettings(data_dir=tmp_path / "a", secrets_file=path, database_url="sqlite://")
    b = ApiSettings(data_dir=tmp_path / "b", secrets_file=path, database_url="sqlite://")
    assert resolve_secrets(a) == resolve_secrets(b) == shared
    token = issue_token(resolve_secrets(a).token_secret, "0x" + "11" * 20, "contributor", 60)
    assert read_token(resolve_secrets(b).token_secret, token)[0] == "0x" + "11" * 20
    # the environment's fields come first; without any, files in the data directory (created once)
    override = ApiSettings(data_dir=tmp_path / "c", secrets_file=path, platform_key="22" * 32, database_url="sqlite://")
    assert resolve_secrets(override).platform_key == bytes.fromhex("22" * 32)
    alone = ApiSettings(data_dir=tmp_path / "d", database_url="sqlite://")
    assert resolve_secrets(alone) == resolve_secrets(alone) != shared
    assert (tmp_path / "d" / "token.secret").exists()


def test_bad_secrets_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    with pytest.raises(ConfigurationError, match="platform init"):
        PlatformSecrets.load(path)
    path.write_text(json.dumps({"format": "something else"}))
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="not a mindprint platform secrets file"):
        PlatformSecrets.load(path)
    open_file = tmp_path / "open.json"
    PlatformSecrets.generate().save(open_file)
    open_file.chmod(0o644)
    with pytest.raises(KeyStoreError, match="accessible by other users"):
        PlatformSecrets.load(open_file)
    with pytest.raises(ConfigurationError, match="32 bytes"):
        resolve_secrets(ApiSettings(data_dir=tmp_path / "x", platform_key="ab", database_url="sqlite://"))


def test_two_serve_processes_share_sign_ins(tmp_path: Path) -> None:
    """Two `mindprint serve` processes, each with its own data directory, on one database and
    one secrets file: a token from replica A works on replica B, and both wrap for one key."""
    operator = Account.create()
    secrets_file = tmp_path / "secrets.json"
    assert runner.invoke(app, ["platform", "init", "--secrets-file", str(secrets_file)]).exit_code == 0
    env = {"MINDPRINT_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}", "MINDPRINT_SECRETS_FILE": str(secrets_file)}
    with (
        mindprint_server(tmp_path / "a", operator.address, env) as a,
        mindprint_server(tmp_path / "b", operator.address, env) as b,
    ):
        token = sign_in(a, operator)
        answer = httpx.get(f"{b}/projects", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        assert httpx.get(f"{a}/config").json()["platform_key"] == httpx.get(f"{b}/config").json()["platform_key"]

"""Every setting of the platform, from ``MINDPRINT_*`` environment variables (pydantic-settings).

Read by the CLI and the API only, and passed down; nothing else reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mindprint.core.settings import load_settings

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Platform settings; each field is read from ``MINDPRINT_<FIELD>``.

    ``database_url`` defaults to SQLite in ``MINDPRINT_HOME``; ``token_secret`` (HMAC key
    of bearer tokens) defaults to a secret created once in the data directory, so a
    restart does not sign everyone out; ``operators`` is a comma-separated address list.
    """

    model_config = SettingsConfigDict(env_prefix="MINDPRINT_", frozen=True, extra="ignore")

    database_url: str = ""
    domain: str = "localhost"
    token_secret: bytes | None = Field(default=None, repr=False)
    # shared by every process of one platform (see mindprint.platform.secrets): hex values,
    # or a file written once by `mindprint platform init`
    platform_key: str | None = Field(default=None, repr=False)
    pseudonym_secret: str | None = Field(default=None, repr=False)
    secrets_file: Path | None = None
    operators: Annotated[tuple[str, ...], NoDecode] = ()
    token_seconds: int = Field(default=900, ge=10)
    lease_seconds: int = Field(default=600, ge=10)
    chain_id: int = 1
    data_dir: Path | None = None  # blockstore, keys, journals; default MINDPRINT_HOME/platform
    rpc_url: str | None = None  # a JSON-RPC chain; default the embedded in-process EVM
    deployment_file: Path | None = None  # the contracts on rpc_url (`mindprint chain deploy --out`)
    ipfs_url: str | None = None  # a Kubo RPC API to pin to; default: local blockstore only
    liveness_model: Path | None = None  # default: the shipped model
    max_body_bytes: int = Field(default=2 * 2**20, ge=1024)
    # rate limits (per API process; 0 switches one off)
    sign_ins_per_minute: float = Field(default=600.0, ge=0)  # per client IP, /auth/*
    nonces_per_minute: float = Field(default=30.0, ge=0)  # per address
    submissions_per_minute: float = Field(default=600.0, ge=0)  # per contributor
    # submissions verified at once per API process (the rest wait their turn): numpy and the
    # GIL make more threads cost more CPU per submission, not more throughput
    verify_concurrency: int = Field(default=1, ge=1, le=64)
    # challenge–response (projects with challenge_cues): a device's last K cue trials decide,
    # their evoked response must reach this z. The sign-flip null's tail is heavier than a
    # Gaussian's: of sessions scored at cue times independent of the EEG (EEGLAB task, 36
    # trials from 12 samples, 3000 sessions per presentation) 0.27 % reached z 4 through 2
    # channels, 0.10 % z 4.5. K = 36 (24 until 2026-12-06) raises an honest session's z by
    # √1.5: through 2 channels, one cue per sample, 94.6 % of real sessions reached 4 at K = 24,
    # 100 % reach 4.5 at K = 36 (three cues per sample, 12 samples: 98.6 %)
    challenge_trials: int = Field(default=36, ge=4, le=256)
    challenge_min_z: float = Field(default=4.5, gt=0)
    # ...from at least this many samples: a sample's trials flip together in the null, and the
    # z of G samples cannot exceed √(G(G−1)/2) (EEGLAB task, three cues per sample, z ≥ 4:
    # 8 samples passed 84.5–97 % of real sessions, 12 samples 99–100 %; at z ≥ 4.5, 98.6–100 %)
    challenge_min_samples: int = Field(default=12, ge=4, le=256)

    @field_validator("operators", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(a.strip().lower() for a in value.split(",") if a.strip())
        return tuple(str(a).lower() for a in value)

    @field_validator("token_secret", mode="before")
    @classmethod
    def _encode(cls, value: Any) -> Any:
        return value.encode() if isinstance(value, str) else value

    def model_post_init(self, context: Any) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{load_settings().home / 'platform.db'}")

    @property
    def platform_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else load_settings().home / "platform"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

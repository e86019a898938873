"""One place that builds the platform from :class:`~mindprint.platform.settings.Settings`.

:func:`platform_for` returns the process's :class:`Platform` for a data directory: the
database engine (migrated), blockstore, key store and platform key, liveness model,
token secret. :func:`connect_chain` adds
the chain, the contracts and the anchoring journal. The API (``api/deps.py``), ``serve``,
``worker``, the export commands and the demo all go through here.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from mindprint.core.ratelimit import RateLimiter
from mindprint.labeling.store import make_engine, migrate
from mindprint.labeling.verification.model import LivenessModel
from mindprint.labeling.verification.uniqueness import ReplayRule
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.crypto import KeyStore, RecipientKey
from mindprint.platform.secrets import resolve_secrets
from mindprint.platform.settings import Settings

if TYPE_CHECKING:
    from mindprint.device.session import SessionHeader
    from mindprint.ledger.anchoring import Anchorer
    from mindprint.ledger.chain import ChainClient, Deployment

logger = logging.getLogger(__name__)

__all__ = ["Platform", "connect_chain", "engine_for", "platform_for"]

SESSION_CACHE = 256
CHUNK_CACHE = 2048  # decoded chunks (~5 KB each for 8 ch × 0.5 s at 250 Hz)


@dataclass
class Platform:
    """Process-wide platform state shared by the API and the workers."""

    liveness: LivenessModel
    blockstore: Blockstore
    keys: KeyStore
    platform_key: RecipientKey
    chain_id: int = 1
    registry_address: str = "0x0000000000000000000000000000000000000000"
    # the replay rule (hop, similarity, channels): the index itself is in the database
    replay_rule: ReplayRule = field(default_factory=ReplayRule)
    anchorer: Anchorer | None = None  # set by connect_chain
    chain: ChainClient | None = None
    distributor: str | None = None
    deployment: Deployment | None = None
    engine: Engine | None = None
    token_secret: bytes = b""
    pseudonym_key: bytes = field(default=b"", repr=False)
    nonce_limits: RateLimiter = field(default_factory=lambda: RateLimiter(30, 10))
    submission_limits: RateLimiter = field(default_factory=lambda: RateLimiter(600, 150))
    verify_slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(1))
    challenge_trials: int = 36  # cue trials of a device that decide its challenge score (settings.py)
    challenge_min_z: float = 4.5
    challenge_min_samples: int = 12  # ...from at least this many samples
    _sessions: OrderedDict[str, tuple[bytes, SessionHeader]] = field(default_factory=OrderedDict, repr=False)
    _chunks: OrderedDict[bytes, dict[str, Any]] = field(default_factory=OrderedDict, repr=False)
    # the caches' own lock: ``lock`` is held across replay queries, which chunk uploads and
    # session look-ups must not wait for
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _models: Any = field(default=None, repr=False)

    def models(self, cid: str) -> Any:
        """A model the platform published (by CID), decoded once: to re-execute on-device inference."""
        if self._models is None:
            from mindprint.federated.inference import ModelCache
            from mindprint.platform.federated import model_block

            self._models = ModelCache(lambda c: model_block(self, c))
        return self._models(cid)

    def remember_session(self, session: str, data_key: bytes, header: SessionHeader) -> None:
        """Cache a streamed session's data key and header (bounded LRU)."""
        with self._cache_lock:
            self._sessions[session] = (data_key, header)
            self._sessions.move_to_end(session)
            while len(self._sessions) > SESSION_CACHE:
                self._sessions.popitem(last=False)

    def remember_chunk(self, cid: bytes, value: dict[str, Any]) -> None:
        """Keep a verified chunk's decoded value (bounded LRU): samples cite the chunks just
        uploaded, so most submissions need no decryption or decoding again."""
        with self._cache_lock:
            self._chunks[cid] = value
            while len(self._chunks) > CHUNK_CACHE:
                self._chunks.popitem(last=False)

    def verified_chunk(self, cid: bytes) -> dict[str, Any] | None:
        with self._cache_lock:
            return self._chunks.get(cid)

    def session_context(self, session: str) -> tuple[bytes, SessionHeader] | None:
        with self._cache_lock:
            found = self._sessions.get(session)
            if found is not None:
                self._sessions.move_to_end(session)
            return found


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine


def engine_for(settings: Settings) -> Engine:
    """The (migrated) database engine of ``settings``, one per URL and process."""
    return _engine(settings.database_url)


_platforms: dict[str, Platform] = {}
_build_lock = threading.Lock()


def platform_for(settings: Settings) -> Platform:
    """The platform of ``settings.platform_dir`` (built once per process)."""
    key = str(settings.platform_dir)
    with _build_lock:
        if key not in _platforms:
            _platforms[key] = _build(settings)
        return _platforms[key]


def _build(settings: Settings) -> Platform:
    from mindprint.labeling.verification.model import load_default_model

    root = settings.platform_dir
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    shared = resolve_secrets(settings)
    recipient = RecipientKey.from_private_bytes(shared.platform_key)
    secret = shared.token_secret
    liveness = LivenessModel.load(settings.liveness_model) if settings.liveness_model else load_default_model()
    platform = Platform(
        liveness=liveness,
        blockstore=Blockstore(root / "blocks"),
        keys=KeyStore(root / "keys"),
        platform_key=recipient,
        chain_id=settings.chain_id,
        engine=engine_for(settings),
        token_secret=secret,
        pseudonym_key=shared.pseudonym_secret,
        nonce_limits=RateLimiter(settings.nonces_per_minute, burst=max(1, int(settings.nonces_per_minute // 3))),
        submission_limits=RateLimiter(
            settings.submissions_per_minute, burst=max(1, int(settings.submissions_per_minute // 4))
        ),
        verify_slots=threading.BoundedSemaphore(settings.verify_concurrency),
        challenge_trials=settings.challenge_trials,
        challenge_min_z=settings.challenge_min_z,
        challenge_min_samples=settings.challenge_min_samples,
    )
    from mindprint.platform.replay import import_fingerprint_files

    assert platform.engine is not None
    import_fingerprint_files(platform.engine, root / "fingerprints")  # an older version's files
    return platform


def connect_chain(
    platform: Platform, settings: Settings, *, operator_key: str | None = None, deploy: bool = False
) -> Platform:
    """Attach the chain (``settings.rpc_url`` or the embedded EVM), the contracts and the anchoring journal.

    The embedded chain starts empty: the contracts are deployed on it every time. On a
    JSON-RPC chain the contracts come from a deployment file (``settings.deployment_file``,
    else ``deployment-<chain id>.json`` in the data directory, written by an earlier
    ``deploy``); ``deploy`` deploys them when there is none (development: ``serve --deploy``)."""
    from mindprint.core.errors import ConfigurationError
    from mindprint.ledger.anchoring import Anchorer
    from mindprint.ledger.chain import ChainClient, Deployment, deploy_contracts

    rpc_url = settings.rpc_url
    if rpc_url and not operator_key:
        raise ConfigurationError(f"{rpc_url}: the operator key is needed ($MINDPRINT_OPERATOR_KEY or --key-file)")
    chain = ChainClient.connect(rpc_url, operator_key) if rpc_url and operator_key else ChainClient.embedded()
    deployment_file = settings.platform_dir / f"deployment-{chain.chain_id}.json"
    if not rpc_url:
        deployment = deploy_contracts(chain)
        deployment.save(deployment_file)
    elif settings.deployment_file is not None:
        if not settings.deployment_file.is_file():
            raise ConfigurationError(f"deployment file {settings.deployment_file} not found")
        deployment = Deployment.load(settings.deployment_file)
        if deployment.chain_id != chain.chain_id:
            raise ConfigurationError(
                f"{settings.deployment_file} is for chain {deployment.chain_id}, {rpc_url} is chain {chain.chain_id}"
            )
        if not deployment_file.exists():  # where exports and `mindprint worker` look for it
            deployment.save(deployment_file)
    elif deployment_file.exists():
        deployment = Deployment.load(deployment_file)
    elif deploy:
        deployment = deploy_contracts(chain)
        deployment.save(deployment_file)
    else:
        raise ConfigurationError(
            f"no contracts for chain {chain.chain_id}: deploy them once with `mindprint chain deploy --rpc-url "
            f"{rpc_url} --out deployment.json` and pass --deployment deployment.json (or MINDPRINT_DEPLOYMENT_FILE); "
            "`serve --deploy` deploys them itself (development)"
        )
    platform.chain_id = chain.chain_id
    platform.registry_address = deployment.devices
    platform.chain = chain
    platform.deployment = deployment
    platform.distributor = deployment.distributor
    assert platform.engine is not None
    platform.anchorer = Anchorer(platform.engine, platform.blockstore, chain, deployment.registry)
    platform.anchorer.import_sqlite_journal(settings.platform_dir / "anchoring.sqlite")  # an older version's file
    if chain.embedded_tester is not None:
        platform.anchorer.reconcile()  # a fresh embedded chain holds none of the earlier anchors
    return platform


def export_source(platform: Platform, settings: Settings) -> Any:
    """An export source over this platform (its keys, blockstore, deployment and pseudonyms)."""
    from mindprint.export.bids import platform_source

    assert platform.engine is not None
    return platform_source(
        platform.engine,
        settings.platform_dir,
        platform.blockstore,
        platform.keys,
        platform.platform_key,
        chain_id=platform.chain_id,
        pseudonym_secret=platform.pseudonym_key,
    )


def describe(platform: Platform) -> dict[str, Any]:
    """What ``/config`` tells a companion: chain, device registry, the platform's public key."""
    return {
        "chain_id": platform.chain_id,
        "device_registry": platform.registry_address,
        "platform_key": platform.platform_key.public_key.hex(),
        "key_wrapping": "hpke-x25519-sha256-chacha20poly1305",
        "distributor": platform.distributor,
    }

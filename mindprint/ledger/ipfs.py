"""IPFS over the Kubo RPC API (httpx), and a durable queue so an outage loses nothing.

:class:`KuboClient` speaks the RPC API every Kubo-compatible node serves (Kubo itself,
and the js-ipfs daemon the integration tests start): ``block/put``, ``block/get``,
``pin/add|rm|ls``, ``dag/import``, ``dag/export``, ``add``. Requests have timeouts and
are retried with exponential backoff; a node that is down raises :class:`IPFSError`
with the address and the reason.

:class:`PinQueue` is the durable side: DAGs to pin are recorded in SQLite first, then
pushed to the node as a CAR (``dag/import`` pins its roots). Failures leave the entry
queued with the error and a retry time, so pinning is delayed by an outage, never lost.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from multiformats import CID

from mindprint.core.errors import IPFSError
from mindprint.core.ipld import cid_for_block
from mindprint.ledger.blockstore import Blockstore

logger = logging.getLogger(__name__)

__all__ = ["KuboClient", "PinQueue"]


class KuboClient:
    """Client of a Kubo RPC API endpoint such as ``http://127.0.0.1:5001``."""

    def __init__(self, url: str, *, timeout: float = 30.0, retries: int = 3, backoff: float = 0.2) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(base_url=f"{self.url}/api/v0", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KuboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, params: dict[str, Any] | None = None, files: Any = None) -> httpx.Response:
        delay = self.backoff
        for attempt in range(1, self.retries + 1):
            try:
                response = self._http.post(path, params=params, files=files)
            except httpx.TransportError as err:
                if attempt == self.retries:
                    raise IPFSError(f"IPFS node at {self.url} unreachable ({type(err).__name__}: {err})") from err
                logger.warning("IPFS %s failed (%s); retrying in %.1f s", path, err, delay)
                time.sleep(delay)
                delay *= 2
                continue
            if response.status_code >= 500 and attempt < self.retries and "not found" not in response.text:
                time.sleep(delay)
                delay *= 2
                continue
            if response.status_code != 200:
                raise IPFSError(f"IPFS {path} answered {response.status_code}: {response.text.strip()[:300]}")
            return response
        raise AssertionError("unreachable")

    @staticmethod
    def _json_lines(response: httpx.Response) -> list[dict[str, Any]]:
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    def version(self) -> str:
        return str(self._post("version").json().get("Version"))

    _dialect: str | None = None  # "kubo" (cid-codec) or "js" (format + version)

    def block_put(self, data: bytes, codec: str = "raw") -> CID:
        """Store a block; returns the node's CID, checked against the locally computed one.

        Kubo takes ``cid-codec``; the js-ipfs daemon takes ``format`` and ``version``
        and silently answers a CIDv0 to the other spelling, so the client learns the
        dialect from the first answer.
        """
        expected = cid_for_block(data, codec)
        dialects = [self._dialect] if self._dialect else ["kubo", "js"]
        got: CID | None = None
        for dialect in dialects:
            params = (
                {"cid-codec": codec, "mhtype": "sha2-256"}
                if dialect == "kubo"
                else {"format": codec, "mhtype": "sha2-256", "version": "1"}
            )
            response = self._post("block/put", params, files={"file": ("block", data)})
            got = CID.decode(response.json()["Key"]).set(base="base32")
            if got == expected:
                self._dialect = dialect
                return got
        raise IPFSError(f"node stored the block as {got}, expected {expected}")

    def block_get(self, cid: CID | str) -> bytes:
        return self._post("block/get", {"arg": str(cid)}).content

    def add(self, data: bytes, *, pin: bool = True, raw_leaves: bool = True) -> CID:
        params = {"pin": str(pin).lower(), "raw-leaves": str(raw_leaves).lower(), "cid-version": "1"}
        response = self._post("add", params, files={"file": ("data", data)})
        return CID.decode(self._json_lines(response)[-1]["Hash"]).set(base="base32")

    def pin_add(self, cid: CID | str) -> None:
        self._post("pin/add", {"arg": str(cid), "recursive": "true"})

    def pin_rm(self, cid: CID | str) -> None:
        self._post("pin/rm", {"arg": str(cid), "recursive": "true"})

    def pin_ls(self) -> set[CID]:
        response = self._post("pin/ls", {"type": "recursive"})
        body = response.json() if response.text.lstrip().startswith('{"Keys"') else None
        if body is not None:
            return {CID.decode(k).set(base="base32") for k in body.get("Keys", {})}
        return {CID.decode(entry["Cid"]).set(base="base32") for entry in self._json_lines(response)}

    def dag_import(self, car: bytes) -> list[CID]:
        """Import a CAR (its roots are pinned); returns the roots."""
        response = self._post("dag/import", {"pin-roots": "true"}, files={"file": ("dag.car", car)})
        roots = []
        for entry in self._json_lines(response):
            root = entry.get("Root")
            if root and "Cid" in root:
                cid = root["Cid"]
                roots.append(CID.decode(cid["/"] if isinstance(cid, dict) else cid).set(base="base32"))
        return roots

    def dag_export(self, cid: CID | str) -> bytes:
        return self._post("dag/export", {"arg": str(cid)}).content


SCHEMA = """
CREATE TABLE IF NOT EXISTS pin_queue (
    cid TEXT PRIMARY KEY, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL, last_error TEXT, added REAL NOT NULL, pinned REAL);
"""


class PinQueue:
    """Durable queue of DAG roots to pin on an IPFS node."""

    def __init__(self, journal: Path, blockstore: Blockstore, *, max_backoff: float = 300.0) -> None:
        self.db = sqlite3.connect(journal, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self.blockstore = blockstore
        self.max_backoff = max_backoff

    def close(self) -> None:
        self.db.close()

    def enqueue(self, root: CID | str) -> None:
        """Record a DAG to pin (its blocks must be in the local blockstore)."""
        cid = str(CID.decode(str(root)).set(base="base32"))
        self.db.execute(
            "INSERT OR IGNORE INTO pin_queue (cid, state, next_try, added) VALUES (?, 'queued', 0, ?)",
            (cid, time.time()),
        )

    def counts(self) -> dict[str, int]:
        return {state: int(n) for state, n in self.db.execute("SELECT state, count(*) FROM pin_queue GROUP BY state")}

    def drain(self, client: KuboClient, *, now: float | None = None, limit: int = 100) -> tuple[int, int]:
        """Push due entries to the node; returns (pinned, failed). Never raises IPFSError."""
        now = time.time() if now is None else now
        rows = self.db.execute(
            "SELECT cid, attempts FROM pin_queue WHERE state='queued' AND next_try <= ? ORDER BY added LIMIT ?",
            (now, limit),
        ).fetchall()
        pinned = failed = 0
        for cid, attempts in rows:
            try:
                with tempfile.NamedTemporaryFile(suffix=".car") as handle:
                    self.blockstore.export_car([cid], Path(handle.name))
                    roots = client.dag_import(Path(handle.name).read_bytes())
                if CID.decode(cid) not in roots:
                    client.pin_add(cid)
            except IPFSError as err:
                delay = min(self.max_backoff, 2.0 ** min(attempts, 16))
                self.db.execute(
                    "UPDATE pin_queue SET attempts=attempts+1, next_try=?, last_error=? WHERE cid=?",
                    (now + delay, str(err), cid),
                )
                logger.warning("pinning %s failed (%s); retry in %.0f s", cid, err, delay)
                failed += 1
                continue
            self.db.execute(
                "UPDATE pin_queue SET state='pinned', pinned=?, last_error=NULL WHERE cid=?", (time.time(), cid)
            )
            pinned += 1
        return pinned, failed

"""IPFS over the Kubo RPC API (httpx).

:class:`KuboClient` speaks the RPC API every Kubo-compatible node serves (Kubo itself,
and the js-ipfs daemon the integration tests start): ``block/put``, ``block/get``,
``pin/add|rm|ls``, ``dag/import``, ``dag/export``, ``add``. Requests have timeouts and
are retried with exponential backoff; a node that is down raises :class:`IPFSError`
with the address and the reason.

:func:`push_dag` puts a DAG on the node as a CAR (``dag/import`` pins its roots). The
durable side is the platform's job queue (``labeling/worker.py``): a ``pin`` job whose push
fails stays queued with the error and a retry time, so an outage delays pinning, never
loses it, and any worker process of any host can take the job.
"""

from __future__ import annotations

import json
import logging
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

__all__ = ["KuboClient", "push_dag"]


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


def push_dag(client: KuboClient, blockstore: Blockstore, root: CID | str) -> None:
    """Put the DAG under ``root`` (its blocks in ``blockstore``) on the node, pinned.

    One CAR through ``dag/import`` (the node pins its roots); raises :class:`IPFSError` when
    the node is down or refuses it — the caller retries (the platform's pin jobs back off).
    """
    cid = CID.decode(str(root)).set(base="base32")
    with tempfile.NamedTemporaryFile(suffix=".car") as handle:
        blockstore.export_car([cid], Path(handle.name))
        roots = client.dag_import(Path(handle.name).read_bytes())
    if cid not in roots:
        client.pin_add(cid)

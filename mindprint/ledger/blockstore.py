"""The embedded blockstore: content-addressed blocks on the filesystem.

Layout under the store's root::

    blocks/<2 chars>/<CID base32>   one file per block, written atomically
                                    (temporary file + fsync + rename)
    pins/<CID base32>               one empty file per recursive pin

Every read re-hashes the bytes against the CID (``BlockCorruptError`` on mismatch).
Writes are idempotent and atomic, so two processes writing the same or different blocks
at once cannot corrupt the store. Garbage collection deletes every block not reachable
from a pin through DAG-CBOR links.

CARv1 export and import use the same framing as ``mindprint.core.ipld`` and produce
files a real IPFS node imports (``ipfs dag import``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from multiformats import CID

from mindprint.core.errors import BlockCorruptError, BlockNotFoundError, LedgerError
from mindprint.core.ipld import (
    DAG_CBOR,
    RAW,
    car_header,
    car_section,
    cid_for_block,
    cid_text,
    decode_block,
    encode_block,
    read_car,
)

logger = logging.getLogger(__name__)

__all__ = ["Blockstore", "iter_links"]


def iter_links(value: Any) -> Iterator[CID]:
    """Yield every CID linked from a decoded DAG-CBOR value."""
    if isinstance(value, CID):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_links(item)
    elif isinstance(value, list):
        for item in value:
            yield from iter_links(item)


def _as_cid(cid: CID | str) -> CID:
    return CID.decode(cid) if isinstance(cid, str) else cid


class Blockstore:
    """Filesystem blockstore with pins and garbage collection.

    Parameters
    ----------
    root : Path
        Directory (created if missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "blocks").mkdir(parents=True, exist_ok=True)
        (self.root / "pins").mkdir(parents=True, exist_ok=True)

    # -- blocks --------------------------------------------------------------------
    def _path(self, cid: CID) -> Path:
        name = cid_text(cid)
        return self.root / "blocks" / name[-2:] / name

    def put(self, data: bytes, codec: str = RAW) -> CID:
        """Store ``data`` under its CIDv1 (``raw`` or ``dag-cbor``); returns the CID."""
        cid = cid_for_block(data, codec)
        path = self._path(cid)
        if path.exists():
            return cid
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)  # atomic; a concurrent writer of the same CID writes the same bytes
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return cid

    def put_node(self, value: Any) -> CID:
        """Encode ``value`` as DAG-CBOR and store it."""
        return self.put(encode_block(value), DAG_CBOR)

    def get(self, cid: CID | str) -> bytes:
        """Return a block's bytes, verified against its CID."""
        cid = _as_cid(cid)
        try:
            data = self._path(cid).read_bytes()
        except FileNotFoundError as err:
            raise BlockNotFoundError(f"block {cid} is not in the store") from err
        if cid_for_block(data, cid.codec.name) != cid:
            raise BlockCorruptError(f"block {cid} on disk does not match its CID")
        return data

    def get_node(self, cid: CID | str) -> Any:
        cid = _as_cid(cid)
        if cid.codec.name != DAG_CBOR:
            raise LedgerError(f"{cid} is a {cid.codec.name} block, not DAG-CBOR")
        return decode_block(self.get(cid))

    def has(self, cid: CID | str) -> bool:
        return self._path(_as_cid(cid)).exists()

    def delete(self, cid: CID | str) -> None:
        self._path(_as_cid(cid)).unlink(missing_ok=True)

    def __iter__(self) -> Iterator[CID]:
        for path in sorted((self.root / "blocks").glob("*/*")):
            if not path.name.startswith(".tmp-"):
                yield CID.decode(path.name)

    # -- pins and GC -----------------------------------------------------------------
    def pin(self, cid: CID | str) -> None:
        """Pin ``cid`` recursively (its DAG must be complete in the store)."""
        cid = _as_cid(cid)
        for _ in self.walk(cid):
            pass  # raises if a block of the DAG is missing or corrupt
        (self.root / "pins" / str(cid.set(base="base32"))).touch()

    def unpin(self, cid: CID | str) -> None:
        (self.root / "pins" / str(_as_cid(cid).set(base="base32"))).unlink(missing_ok=True)

    def pins(self) -> list[CID]:
        return [CID.decode(p.name) for p in sorted((self.root / "pins").iterdir())]

    def walk(self, root: CID | str) -> Iterator[CID]:
        """Every CID of the DAG under ``root`` (depth first, each once)."""
        seen: set[CID] = set()
        stack = [_as_cid(root)]
        while stack:
            cid = stack.pop()
            if cid in seen:
                continue
            seen.add(cid)
            yield cid
            if cid.codec.name == DAG_CBOR:
                stack.extend(reversed(list(iter_links(self.get_node(cid)))))
            else:
                self.get(cid)

    def gc(self) -> list[CID]:
        """Delete every block unreachable from a pin; returns the deleted CIDs."""
        live: set[CID] = set()
        for pinned in self.pins():
            live.update(self.walk(pinned))
        removed = [cid for cid in self if cid not in live]
        for cid in removed:
            self.delete(cid)
        logger.info("gc removed %d blocks, kept %d", len(removed), len(live))
        return removed

    # -- CAR -------------------------------------------------------------------------
    def export_car(self, roots: Iterable[CID | str], out: Path) -> int:
        """Write the DAGs under ``roots`` as a CARv1 file; returns the number of blocks."""
        root_cids = [_as_cid(r) for r in roots]
        count = 0
        written: set[CID] = set()
        with open(out, "wb") as handle:
            handle.write(car_header(root_cids))
            for root in root_cids:
                for cid in self.walk(root):
                    if cid in written:
                        continue
                    written.add(cid)
                    handle.write(car_section(cid, self.get(cid)))
                    count += 1
        return count

    def import_car(self, path: Path) -> list[CID]:
        """Import every block of a CARv1 file (each verified); returns the roots."""
        contents = read_car(Path(path).read_bytes())
        if contents.tail_bytes:
            raise LedgerError(f"{path} is truncated at byte {contents.tail_offset}: {contents.tail_reason}")
        for section in contents.sections:
            if cid_for_block(section.block, section.cid.codec.name) != section.cid:
                raise BlockCorruptError(f"block {section.cid} in {path} does not match its CID")
            self.put(section.block, section.cid.codec.name)
        return [root.set(base="base32") for root in contents.roots]

"""``mindprint verify DATASET_DIR``: re-check everything an export claims.

Checks, each failure reported with the file and the reason:

1. every file against ``sourcedata/mindprint/SHA256SUMS`` (changed, missing, unlisted);
2. per recording (``*_provenance.json``): the session CAR — bytes against CIDs, device
   signatures, the chunk chain, timing (:func:`~mindprint.device.session.verify_session`);
   the chunk list and signatures in the sidecar against the CAR; the device binding
   (EIP-712, the DeviceRegistry's typed data) and the signed consent statement;
3. the EDF against the signed chunks (within half a quantisation step of the EDF);
4. every sample: block against its CID, device (Ed25519) and wallet (EIP-712) signatures,
   its chunks inside the session, its row in events.tsv (label, onset, annotator) and in
   the Parquet table (label, features);
5. every Merkle proof offline against its root, every root listed in
   dataset_description.json, and — given a chain — anchored in the ProvenanceRegistry.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address
from multiformats import CID

from mindprint.core.ipld import cid_for_block, decode_block, read_car
from mindprint.device.keys import verify_signature
from mindprint.device.session import CHUNK_TYPE, SessionHeader, verify_session
from mindprint.export.layout import DIGESTS, FEATURES, TASK, flat_features, iter_files, label_text, sha256_file
from mindprint.export.session_file import chunks_to_raw
from mindprint.labeling.consent import ConsentError, check_consent
from mindprint.ledger.merkle import sample_leaf, verify_proof
from mindprint.protocol.formats import SAMPLE_TYPE, device_typed_data, sample_typed_data

__all__ = ["DatasetReport", "Problem", "verify_dataset"]


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass
class DatasetReport:
    root: str
    files: int = 0
    recordings: int = 0
    samples: int = 0
    on_chain: str = "not checked (no chain given)"
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, file: str | Path, reason: str) -> None:
        self.problems.append(Problem(str(file), reason))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "root": self.root,
            "files": self.files,
            "recordings": self.recordings,
            "samples": self.samples,
            "on_chain": self.on_chain,
            "problems": [{"file": p.file, "reason": p.reason} for p in self.problems],
        }


def _edf_header(path: Path) -> tuple[np.ndarray, float]:
    """Volts per digital step of each EDF signal and the data-record duration (seconds)."""
    with path.open("rb") as handle:
        head = handle.read(256)
        n = int(head[252:256].decode("ascii").strip())
        ext = handle.read(n * 256)

    def field_values(offset: int, width: int) -> list[float]:
        start = offset * n
        return [float(ext[start + i * width : start + (i + 1) * width].decode("ascii").strip()) for i in range(n)]

    # per-signal fields follow each other: label 16, transducer 80, dimension 8, four ranges of 8
    dimension_at = (16 + 80) * n
    units = [ext[dimension_at + i * 8 : dimension_at + (i + 1) * 8].decode("latin-1").strip() for i in range(n)]
    scale = np.array([{"uV": 1e-6, "µV": 1e-6, "mV": 1e-3, "nV": 1e-9}.get(u, 1.0) for u in units])
    base = 16 + 80 + 8
    pmin, pmax = field_values(base, 8), field_values(base + 8, 8)
    dmin, dmax = field_values(base + 16, 8), field_values(base + 24, 8)
    steps = np.abs((np.array(pmax) - np.array(pmin)) / (np.array(dmax) - np.array(dmin))) * scale
    return steps, float(head[244:252].decode("ascii").strip() or 0)


class _Verifier:
    def __init__(self, root: Path, chain: Any, registry: Any, report: DatasetReport) -> None:
        self.root = root
        self.chain = chain
        self.registry = registry
        self.report = report
        self.roots_checked: dict[str, bool] = {}

    def digests(self) -> None:
        listing = self.root / DIGESTS
        present = {p.as_posix() for p in iter_files(self.root)} - {DIGESTS}
        self.report.files = len(present)
        if not listing.exists():
            self.report.add(DIGESTS, "missing: the dataset's file digests are gone")
            return
        listed: dict[str, str] = {}
        for number, line in enumerate(listing.read_text(errors="replace").splitlines(), 1):
            digest, _, name = line.partition("  ")
            if len(digest) != 64 or not name:
                self.report.add(DIGESTS, f"line {number} is malformed")
                continue
            listed[name] = digest
        for name, digest in sorted(listed.items()):
            if name not in present:
                self.report.add(name, "missing (listed in SHA256SUMS)")
            elif sha256_file(self.root / name) != digest:
                self.report.add(name, "content changed: SHA-256 differs from SHA256SUMS")
        for name in sorted(present - listed.keys()):
            self.report.add(name, "not part of the export (absent from SHA256SUMS)")

    def on_chain(self, root_hex: str) -> bool | None:
        if self.registry is None:
            return None
        if root_hex not in self.roots_checked:
            try:
                self.roots_checked[root_hex] = bool(
                    self.chain.call(self.registry.functions.is_anchored(bytes.fromhex(root_hex)))
                )
            except Exception as err:  # node down, no contract at the address: reported, not raised
                self.report.add(
                    "dataset_description.json", f"cannot ask the ProvenanceRegistry about root {root_hex[:16]}…: {err}"
                )
                self.registry = None
                return None
        return self.roots_checked[root_hex]

    def recording(self, sidecar_path: Path, description: dict[str, Any], parquet: dict[str, dict[str, Any]]) -> None:
        rel = sidecar_path.relative_to(self.root).as_posix()
        try:
            sidecar = json.loads(sidecar_path.read_text())
        except (OSError, ValueError) as err:
            self.report.add(rel, f"unreadable provenance sidecar: {err}")
            return
        self.report.recordings += 1
        car_rel = str(sidecar.get("session_car", ""))
        car_path = self.root / car_rel
        if not car_path.is_file():
            self.report.add(car_rel or rel, "session CAR missing")
            return
        session_report = verify_session(car_path.parent)
        for issue in session_report.issues:
            self.report.add(car_rel, f"session: {issue}")
        # the CAR is parsed once here; header, chunk list, EEG and samples all use it
        chunk_blocks: dict[CID, dict[str, Any]] = {}
        try:
            contents = read_car(car_path.read_bytes())
            header = SessionHeader.from_block(decode_block(contents.sections[0].block))
            for section in contents.sections[1:]:
                value = decode_block(section.block)
                if isinstance(value, dict) and value.get("type") == CHUNK_TYPE:
                    chunk_blocks[section.cid] = value
        except Exception as err:  # a mangled CAR raises many types; verify_session has reported details
            self.report.add(car_rel, f"unreadable CAR: {err}")
            return
        contributor = str(sidecar.get("contributor"))
        if header.device.hex() != sidecar.get("device") or header.session != sidecar.get("session"):
            self.report.add(rel, "device or session differs from the signed session header")
        for entry in sidecar.get("chunks", []):
            try:
                cid = CID.decode(entry["cid"])
            except Exception:  # multiformats raises several types
                self.report.add(rel, f"chunk CID {entry.get('cid')!r} is not a CID")
                continue
            if cid not in chunk_blocks:
                self.report.add(rel, f"chunk {cid} (seq {entry.get('seq')}) is not in the session CAR")
            elif not entry.get("signature") or not verify_signature(
                header.device, bytes.fromhex(entry["signature"]), bytes(cid)
            ):
                self.report.add(rel, f"device signature on chunk seq {entry.get('seq')} does not verify")
        binding = sidecar.get("binding") or {}
        try:
            typed = device_typed_data(
                header.device, contributor, int(binding["deadline"]), int(binding["chain_id"]), str(binding["registry"])
            )
            signer = Account.recover_message(encode_typed_data(full_message=typed), signature=binding["signature"])
            if signer != to_checksum_address(contributor):
                self.report.add(rel, "device binding is signed by another wallet")
        except Exception as err:  # missing fields, malformed signature
            self.report.add(rel, f"device binding does not verify: {err}")
        consent = sidecar.get("consent") or {}
        try:
            statement = check_consent(str(consent.get("message")), str(consent.get("signature")))
            if not statement.granted or statement.address != to_checksum_address(contributor):
                self.report.add(rel, "consent statement is not a grant by the contributor")
        except ConsentError as err:
            self.report.add(rel, f"consent: {err}")
        if chunk_blocks:
            self.eeg(sidecar, chunks_to_raw(header, chunk_blocks.values()))
        else:
            self.report.add(car_rel, "the session CAR holds no chunks")
        self.samples(sidecar, chunk_blocks, header, contributor, description, parquet, rel)

    def eeg(self, sidecar: dict[str, Any], signed: mne.io.BaseRaw) -> None:
        """The exported EEG file against the signed session's samples."""
        eeg_rel = str(sidecar.get("eeg"))
        path = self.root / eeg_rel
        if not path.is_file():
            self.report.add(eeg_rel, "EEG file missing")
            return
        brainvision = path.suffix == ".vhdr"
        try:
            if brainvision:
                exported = mne.io.read_raw_brainvision(path, preload=True, verbose="error")
            else:
                exported = mne.io.read_raw_edf(path, preload=True, verbose="error")
                steps, record_seconds = _edf_header(path)
        except Exception as err:  # MNE raises many types on corrupt files
            self.report.add(eeg_rel, f"unreadable {'BrainVision' if brainvision else 'EDF'}: {err}")
            return
        if exported.ch_names != signed.ch_names or exported.info["sfreq"] != signed.info["sfreq"]:
            self.report.add(eeg_rel, "channels or sampling rate differ from the signed session")
            return
        a, b = exported.get_data(), signed.get_data()
        if brainvision:
            # float32 microvolts: exact up to float32 rounding of the unit conversion
            extra = 0.0
            tolerance = np.abs(b) * 1e-6 + 1e-13
        else:
            # EDF stores whole data records: the last one is padded past the end of the session
            extra = max(record_seconds * signed.info["sfreq"], 1)
            # half a digital step of the EDF (plus float rounding)
            tolerance = (steps[: a.shape[0]] * 0.5 * (1 + 1e-6) + 1e-15)[:, None]
        if not 0 <= a.shape[1] - b.shape[1] < max(extra, 1):
            self.report.add(eeg_rel, f"{a.shape[1]} samples, the signed session holds {b.shape[1]}")
            return
        a = a[:, : b.shape[1]]
        bad = np.abs(a - b) > tolerance
        if bad.any():
            channel, sample = np.argwhere(bad)[0]
            self.report.add(
                eeg_rel,
                f"EEG differs from the signed chunks ({int(bad.sum())} values;"
                f" first: {exported.ch_names[channel]} at sample {sample})",
            )
        if brainvision:  # the header names its data and marker files: they must be the exported ones
            for suffix in (".eeg", ".vmrk"):
                if not path.with_suffix(suffix).is_file():
                    self.report.add(str(Path(eeg_rel).with_suffix(suffix)), "BrainVision file missing")

    def samples(
        self,
        sidecar: dict[str, Any],
        chunk_blocks: dict[CID, dict[str, Any]],
        header: Any,
        contributor: str,
        description: dict[str, Any],
        parquet: dict[str, dict[str, Any]],
        rel: str,
    ) -> None:
        events_rel = str(sidecar.get("events"))
        try:
            events = pd.read_csv(self.root / events_rel, sep="\t", dtype=str, keep_default_na=False)
            by_cid = {row["sample_cid"]: row for _, row in events.iterrows()}
        except (OSError, KeyError, ValueError, pd.errors.ParserError) as err:
            self.report.add(events_rel, f"unreadable events: {err}")
            by_cid = {}
        subject = Path(events_rel).name.split("_")[0].removeprefix("sub-")
        chain_id = (description.get("MindprintProvenance") or {}).get("chain_id")
        listed_roots = {b.get("root") for b in (description.get("MindprintProvenance") or {}).get("batches", [])}
        seen = set()
        sfreq = float(header.sfreq)
        for entry in sidecar.get("samples", []):
            self.report.samples += 1
            cid_text = str(entry.get("cid"))
            seen.add(cid_text)
            try:
                block = base64.b64decode(entry["block"], validate=True)
                cid = CID.decode(cid_text)
            except Exception as err:  # base64 / multiformats errors
                self.report.add(rel, f"sample {cid_text}: undecodable ({err})")
                continue
            if cid_for_block(block) != cid:
                self.report.add(rel, f"sample {cid_text}: block does not match its CID")
                continue
            value = dict(decode_block(block))
            if (
                value.get("type") != SAMPLE_TYPE
                or value.get("session") != header.session
                or bytes(value.get("device", b"")) != header.device
            ):
                self.report.add(rel, f"sample {cid_text}: not a sample of this session and device")
            if not verify_signature(header.device, bytes.fromhex(str(entry.get("device_signature"))), bytes(cid)):
                self.report.add(rel, f"sample {cid_text}: device signature does not verify")
            try:
                typed = sample_typed_data(cid, int(value["task"]), value["label"], int(chain_id or 0))
                signer = Account.recover_message(
                    encode_typed_data(full_message=typed), signature=str(entry.get("wallet_signature"))
                )
            except Exception as err:  # malformed signature or fields
                signer = f"unrecoverable ({err})"
            if signer != to_checksum_address(contributor) or value.get("contributor") != to_checksum_address(
                contributor
            ):
                self.report.add(rel, f"sample {cid_text}: wallet signature is not the contributor's")
            missing = [str(c) for c in value.get("chunks", []) if c not in chunk_blocks]
            if missing:
                self.report.add(rel, f"sample {cid_text}: cites chunks absent from the session: {missing[:2]}")
            # the event row
            row = by_cid.get(cid_text)
            onset = (int(value["stimulus_ns"]) - int(sidecar.get("first_t0_ns", 0))) / 1e9
            label = json.dumps(value["label"], sort_keys=True, ensure_ascii=False)
            if row is None:
                self.report.add(events_rel, f"no event for sample {cid_text}")
            else:
                if row["label"] != label_text(value["label"]):
                    self.report.add(
                        events_rel,
                        f"label of sample {cid_text} is {row['label']!r},"
                        f" the signed sample says {label_text(value['label'])!r}",
                    )
                if row["annotator"] != subject:
                    self.report.add(events_rel, f"annotator of sample {cid_text} is not this recording's participant")
                try:
                    if abs(float(row["onset"]) - onset) > 1.0 / sfreq:
                        self.report.add(
                            events_rel,
                            f"onset of sample {cid_text} is {row['onset']} s, the signed stimulus is at {onset:.4f} s",
                        )
                except ValueError:
                    self.report.add(events_rel, f"onset of sample {cid_text} is not a number")
            table = parquet.get(cid_text)
            if table is None:
                self.report.add(FEATURES, f"no row for sample {cid_text}")
            elif table["label"] != label or dict(table["features"]) != flat_features(value.get("features")):
                self.report.add(FEATURES, f"label or features of sample {cid_text} differ from the signed sample")
            # anchoring
            proof = entry.get("proof") or {}
            try:
                ok = verify_proof(
                    sample_leaf(bytes(cid)), [bytes.fromhex(p) for p in proof["siblings"]], bytes.fromhex(proof["root"])
                )
            except (KeyError, TypeError, ValueError):
                ok = False
            if not ok:
                self.report.add(rel, f"sample {cid_text}: Merkle proof does not lead to its root")
                continue
            if proof["root"] not in listed_roots:
                self.report.add(
                    rel, f"sample {cid_text}: root {proof['root'][:16]}… is not among the dataset's batches"
                )
            anchored = self.on_chain(proof["root"])
            if anchored is False:
                self.report.add(
                    rel, f"sample {cid_text}: root {proof['root'][:16]}… is not anchored on chain {chain_id}"
                )
        for extra in sorted(set(by_cid) - seen):
            self.report.add(events_rel, f"event for sample {extra} has no provenance")


def verify_dataset(
    root: Path,
    *,
    chain: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetReport:
    """Verify an exported dataset; ``chain`` (a ChainClient) adds the on-chain checks."""
    root = Path(root)
    report = DatasetReport(str(root))
    if not (root / "dataset_description.json").is_file():
        report.add("dataset_description.json", "missing: not a BIDS dataset")
        return report
    verifier = _Verifier(root, chain, None, report)
    verifier.digests()
    try:
        description = json.loads((root / "dataset_description.json").read_text())
    except ValueError as err:
        report.add("dataset_description.json", f"not JSON: {err}")
        description = {}
    provenance = description.get("MindprintProvenance") or {}
    if chain is not None:
        if provenance.get("chain_id") != chain.chain_id:
            report.add(
                "dataset_description.json",
                f"anchored on chain {provenance.get('chain_id')}, checking against chain {chain.chain_id}",
            )
        else:
            verifier.registry = chain.contract("ProvenanceRegistry", provenance["contracts"]["ProvenanceRegistry"])
            report.on_chain = f"chain {chain.chain_id}, registry {provenance['contracts']['ProvenanceRegistry']}"
    parquet: dict[str, dict[str, Any]] = {}
    try:
        for batch in pq.ParquetFile(root / FEATURES).iter_batches(columns=["sample_cid", "label", "features"]):
            for row in batch.to_pylist():
                parquet[row["sample_cid"]] = row
    except Exception as err:  # pyarrow raises several types on corrupt files
        report.add(FEATURES, f"unreadable Parquet table: {err}")
    sidecars = sorted(root.glob(f"sub-*/eeg/*_task-{TASK}_*_provenance.json"))
    if not sidecars:
        report.add("sub-*/eeg", "no provenance sidecars: nothing can be traced")
    for done, sidecar in enumerate(sidecars, 1):
        verifier.recording(sidecar, description, parquet)
        if progress is not None:
            progress(done, len(sidecars))
    if report.samples != len(parquet) and parquet:
        report.add(FEATURES, f"{len(parquet)} rows for {report.samples} samples")
    return report

"""Researcher export: BIDS-EEG (mne-bids) with provenance, Parquet features, file digests.

One BIDS recording per contributor session: the session's signed chunks, decrypted with
the exporter's key (the platform's, or a researcher's the platform granted), written as
EDF through ``mne_bids.write_raw_bids``; every accepted, consented, anchored sample
recorded in it becomes one row of ``events.tsv``. Layout::

    dataset_description.json        GeneratedBy + MindprintProvenance (chain, contracts, batches)
    README  participants.tsv/json   pseudonymous participant IDs only
    .bidsignore                     hides the provenance sidecars from the validator
    sub-<p>/eeg/sub-<p>_task-labeling_run-<n>_eeg.edf|vhdr|json, _channels.tsv, _events.tsv|json
    sub-<p>/eeg/sub-<p>_task-labeling_run-<n>_provenance.json   CIDs, signatures, proofs, tx
    sourcedata/mindprint/sub-<p>/..._run-<n>/session.car         the device-signed blocks
    derivatives/mindprint/features.parquet                      features, labels, scores
    sourcedata/mindprint/SHA256SUMS                             every other file's digest

Deterministic: nothing depends on the clock, the order of database rows or random state,
so exporting the same selection twice gives byte-identical files (tested). Streaming: one
recording is in memory at a time; Parquet rows are written in row groups.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mne
import mne_bids
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from multiformats import CID
from sqlalchemy import select
from sqlalchemy.engine import Engine

from mindprint import __version__
from mindprint.core.errors import ConfigurationError, CryptoError, ExportError, LedgerError
from mindprint.core.ipld import decode_block
from mindprint.core.secret_files import load_or_create_secret
from mindprint.device.session import CHUNK_TYPE, SESSION_FILE, SIGNATURE_TYPE, SessionHeader
from mindprint.export.layout import DIGESTS, FEATURES, TASK, flat_features, iter_files, label_text, sha256_file
from mindprint.export.session_file import chunks_to_raw
from mindprint.labeling.store import Account, Device, Submission, TaskItem, sessions
from mindprint.ledger.anchoring import InclusionProof, read_proof
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.chain import Deployment
from mindprint.ledger.crypto import KeyStore, RecipientKey
from mindprint.ledger.sealing import open_sealed_car
from mindprint.platform.ingest import session_manifest
from mindprint.signal.pipeline import process_recording

logger = logging.getLogger(__name__)

SCORES = ("authenticity", "liveness", "attention", "uniqueness")
ROW_GROUP = 1024
#: mne-bids formats: EDF (16-bit, compact) or BrainVision (float32 µV, lossless for our data)
FORMATS = {"EDF": ".edf", "BrainVision": ".vhdr"}
EVENT_COLUMNS = {
    "trial_type": "label/<class> for class labels, 'label' for free text and ratings",
    "label": "the contributor's label (what the wallet signed): plain text, or JSON for non-text labels",
    "annotator": "pseudonym of the annotator (the participant who gave the label while recorded)",
    "project": "labeling project id",
    "task_item": "task item id within the project",
    "response_time": "seconds from stimulus to response (from the signed sample)",
    "sample_cid": "CID of the signed sample (see the recording's _provenance.json)",
    **{score: f"platform {score} score (0-1)" for score in SCORES},
}

__all__ = [
    "ExportError",
    "ExportSource",
    "ExportSummary",
    "export_dataset",
    "grant_sessions",
    "platform_source",
    "pseudonym",
    "pseudonym_key",
    "zip_dataset",
]


@dataclass
class ExportSource:
    """What the platform holds: database, sealed blocks, wrapped keys, anchoring journal."""

    engine: Engine
    blockstore: Blockstore
    keys: KeyStore
    recipient: RecipientKey  # whose wrapped data keys open the sessions
    journal: Engine  # the anchoring journal's database (the platform's)
    deployment: Deployment
    pseudonym_key: bytes
    chain_id: int
    domain: str = "localhost"


@dataclass
class ExportSummary:
    out: Path
    recordings: int = 0
    samples: int = 0
    participants: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n


def pseudonym(key: bytes, address: str) -> str:
    """A stable, unlinkable participant label (10 hex chars of HMAC-SHA256)."""
    return hmac.new(key, address.lower().encode(), hashlib.sha256).hexdigest()[:10]


@dataclass
class _Sample:
    row: Submission
    value: dict[str, Any]
    proof: InclusionProof


@dataclass
class _Recording:
    """A session to export: only IDs here; the rows are loaded when it is written."""

    subject: str
    contributor: str
    session: str
    manifest: str
    first: tuple[Any, str]  # (earliest submission time, its CID): a stable order
    cids: list[str]
    run: int = 0

    def load(self, source: ExportSource) -> list[_Sample]:
        """The recording's samples (signed bundle, project, proof) in stimulus order."""
        query = select(Submission, TaskItem.project_id).join(TaskItem, TaskItem.id == Submission.task_id)
        samples = []
        with sessions(source.engine)() as db:
            for row, project in db.execute(query.where(Submission.cid.in_(self.cids))).all():
                value = dict(decode_block(bytes(row.sample_block)))
                value["_project"] = project
                samples.append(_Sample(row, value, read_proof(source.journal, row.cid)))
        samples.sort(key=lambda s: (int(s.value["stimulus_ns"]), s.row.cid))
        return samples


def _selection(source: ExportSource, projects: list[int] | None, summary: ExportSummary) -> list[_Recording]:
    """Accepted, consented, anchored samples grouped by session (IDs only: memory stays small)."""
    query = (
        select(
            Submission.cid,
            Submission.session,
            Submission.contributor,
            Submission.created,
            Submission.sealed_manifest,
            Submission.sample_block.is_(None),
            Account.consent,
        )
        .join(TaskItem, TaskItem.id == Submission.task_id)
        .join(Account, Account.address == Submission.contributor)
        .where(Submission.status == "accepted")
        .order_by(Submission.cid)
    )
    if projects:
        query = query.where(TaskItem.project_id.in_(projects))
    groups: dict[str, _Recording] = {}
    latest: dict[str, tuple[Any, str]] = {}
    with sessions(source.engine)() as db:
        for cid, session, contributor, created, manifest, no_block, consent in db.execute(query):
            if not consent:
                summary.skip("contributor has not consented")
                continue
            if no_block or session is None or manifest is None:
                summary.skip("stored before signed bundles were kept")
                continue
            try:
                proof = read_proof(source.journal, cid)
            except LedgerError:
                summary.skip("not anchored yet")
                continue
            if proof.state != "confirmed":
                summary.skip("anchoring not confirmed yet")
                continue
            recording = groups.get(session)
            if recording is None:
                subject = pseudonym(source.pseudonym_key, contributor)
                recording = groups[session] = _Recording(subject, contributor, session, manifest, (created, cid), [])
            recording.cids.append(cid)
            recording.first = min(recording.first, (created, cid))
            # the newest sealed version of the session holds every chunk its samples cite
            if session not in latest or (created, cid) > latest[session]:
                latest[session] = (created, cid)
                recording.manifest = manifest
        for recording in groups.values():  # a streamed session: every chunk the platform holds
            streamed = session_manifest(db, source.blockstore, recording.session)
            if streamed is not None:
                recording.manifest = str(streamed)
    recordings = list(groups.values())
    recordings.sort(key=lambda r: (r.subject, r.first, r.session))
    runs: dict[str, int] = {}
    for recording in recordings:
        runs[recording.subject] = runs.get(recording.subject, 0) + 1
        recording.run = runs[recording.subject]
    return recordings


def _trial_type(label: Any) -> str:
    if isinstance(label, str) and label and len(label) <= 40 and label.replace("-", "").replace("_", "").isalnum():
        return f"label/{label}"
    return "label"


PARQUET_SCHEMA = pa.schema(
    [
        ("sample_cid", pa.string()),
        ("participant_id", pa.string()),
        ("recording", pa.string()),
        ("project", pa.int64()),
        ("task_item", pa.int64()),
        ("label", pa.string()),
        ("onset", pa.float64()),
        ("response_time", pa.float64()),
        *[(score, pa.float64()) for score in SCORES],
        ("pipeline_version", pa.string()),
        ("features", pa.map_(pa.string(), pa.float64())),
    ]
)


def _channel_status(raw: mne.io.BaseRaw, eeg: list[int]) -> tuple[list[str], dict[str, str], float | None]:
    """Bad channels and reasons from the signal pipeline's quality index (median over windows)."""
    data = raw.get_data(picks=eeg)
    names = [raw.ch_names[i] for i in eeg]
    result = process_recording(data, raw.info["sfreq"], names)
    quality = result.quality_matrix()
    descriptions: dict[str, str] = {}
    bads: list[str] = []
    if quality.size:
        median = np.median(quality, axis=0)
        for c, name in enumerate(names):
            reasons: dict[str, int] = {}
            for window in result.quality:
                for reason in window.reasons[c]:
                    reasons[reason] = reasons.get(reason, 0) + 1
            top = sorted(reasons, key=lambda r: (-reasons[r], r))[:3]
            if median[c] < 0.5:
                bads.append(name)
                descriptions[name] = f"quality index {median[c]:.2f}: " + (", ".join(top) or "low quality")
            else:
                descriptions[name] = f"quality index {median[c]:.2f}"
    return bads, descriptions, result.line_freq


def _rewrite_tsv(path: Path, update: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    update(frame).to_csv(path, sep="\t", index=False, lineterminator="\n")


def _json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


class _Exporter:
    def __init__(self, source: ExportSource, out: Path, fmt: str = "EDF") -> None:
        self.source = source
        self.out = out
        self.fmt = fmt
        self.batches: dict[str, dict[str, Any]] = {}
        self.rows: list[dict[str, Any]] = []
        self.writer: pq.ParquetWriter | None = None

    def _flush(self, force: bool = False) -> None:
        while self.rows and (force or len(self.rows) >= ROW_GROUP):
            group, self.rows = self.rows[:ROW_GROUP], self.rows[ROW_GROUP:]
            if self.writer is None:
                (self.out / FEATURES).parent.mkdir(parents=True, exist_ok=True)
                self.writer = pq.ParquetWriter(self.out / FEATURES, PARQUET_SCHEMA, compression="zstd")
            self.writer.write_table(pa.Table.from_pylist(group, schema=PARQUET_SCHEMA))

    def recording(self, rec: _Recording, data_key: bytes) -> None:
        source = self.source
        car, blocks = open_sealed_car(rec.manifest, data_key, source.blockstore)
        stem = f"sub-{rec.subject}_task-{TASK}_run-{rec.run}"
        car_dir = self.out / "sourcedata" / "mindprint" / f"sub-{rec.subject}" / stem
        car_dir.mkdir(parents=True, exist_ok=True)
        (car_dir / SESSION_FILE).write_bytes(car)
        decoded = [(b.cid, decode_block(b.data)) for b in blocks]  # once: header, chunks, signatures
        header = SessionHeader.from_block(decoded[0][1])
        chunks = [(cid, v) for cid, v in decoded[1:] if isinstance(v, dict) and v.get("type") == CHUNK_TYPE]
        if not chunks:
            raise ExportError(f"sealed session {rec.session} holds no chunks")
        raw = chunks_to_raw(header, (v for _, v in chunks))
        raw.set_annotations(None)  # the samples are the events (markers stay in the signed chunks)
        eeg = [i for i, kind in enumerate(header.types) if kind == "eeg"]
        bads, descriptions, line_freq = _channel_status(raw, eeg)
        raw.info["bads"] = bads
        raw.info["line_freq"] = line_freq
        first_t0 = int(chunks[0][1]["t0_ns"])
        sfreq = float(raw.info["sfreq"])

        onsets, meta, sidecar_samples = [], [], []
        samples = rec.load(source)
        for sample in samples:
            v = sample.value
            onset = round((int(v["stimulus_ns"]) - first_t0) / 1e9 * sfreq)
            scores = sample.row.scores or {}
            label_json = json.dumps(v["label"], sort_keys=True, ensure_ascii=False)
            response_time = (int(v["response_ns"]) - int(v["stimulus_ns"])) / 1e9
            onsets.append(onset)
            meta.append(
                {
                    "trial_type": _trial_type(v["label"]),
                    "label": label_text(v["label"]),
                    "annotator": rec.subject,
                    "project": int(v["_project"]),
                    "task_item": int(v["task"]),
                    "response_time": round(response_time, 6),
                    "sample_cid": sample.row.cid,
                    **{s: round(float(scores.get(s, float("nan"))), 6) for s in SCORES},
                }
            )
            proof = sample.proof
            sidecar_samples.append(
                {
                    "cid": sample.row.cid,
                    "block": base64.b64encode(bytes(sample.row.sample_block or b"")).decode(),
                    "device_signature": sample.row.device_signature,
                    "wallet_signature": sample.row.wallet_signature,
                    "onset_sample": onset,
                    "proof": {
                        "root": proof.root,
                        "siblings": proof.proof,
                        "batch_manifest": proof.manifest,
                        "tx_hash": proof.tx_hash,
                        "block": proof.block,
                        "chain_id": proof.chain_id,
                        "registry": proof.registry,
                    },
                }
            )
            self.batches[proof.root] = {
                "root": proof.root,
                "manifest": proof.manifest,
                "tx_hash": proof.tx_hash,
                "block": proof.block,
            }
            self.rows.append(
                {
                    "sample_cid": sample.row.cid,
                    "participant_id": f"sub-{rec.subject}",
                    "recording": stem,
                    "project": int(v["_project"]),
                    "task_item": int(v["task"]),
                    "label": label_json,
                    "onset": onset / sfreq,
                    "response_time": response_time,
                    **{s: float(scores.get(s, float("nan"))) for s in SCORES},
                    "pipeline_version": str(v.get("pipeline")),
                    "features": sorted(flat_features(v.get("features")).items()),
                }
            )
        codes = {t: i + 1 for i, t in enumerate(sorted({str(m["trial_type"]) for m in meta}))}
        events_array = np.array([[o, 0, codes[str(m["trial_type"])]] for o, m in zip(onsets, meta, strict=True)])
        path = mne_bids.BIDSPath(subject=rec.subject, task=TASK, run=rec.run, datatype="eeg", root=self.out)
        mne_bids.write_raw_bids(
            raw,
            path,
            events=events_array,
            event_id=codes,
            event_metadata=pd.DataFrame(meta),
            extra_columns_descriptions=EVENT_COLUMNS,
            format=self.fmt,
            allow_preload=True,
            overwrite=True,
            verbose="error",
        )
        eeg_dir = self.out / f"sub-{rec.subject}" / "eeg"

        def status(frame: pd.DataFrame) -> pd.DataFrame:
            frame["status_description"] = [descriptions.get(n, "n/a") for n in frame["name"]]
            return frame

        _rewrite_tsv(eeg_dir / f"{stem}_channels.tsv", status)
        with source.engine.connect() as connection:
            device = connection.execute(select(Device).where(Device.device == header.device.hex())).first()
            account = connection.execute(select(Account).where(Account.address == rec.contributor)).first()
        chunk_list = _chunk_signatures(decoded)
        _json(
            eeg_dir / f"{stem}_provenance.json",
            {
                "format": "mindprint/provenance/v1",
                "session": rec.session,
                "device": header.device.hex(),
                "contributor": rec.contributor,
                "eeg": f"sub-{rec.subject}/eeg/{stem}_eeg{FORMATS[self.fmt]}",
                "events": f"sub-{rec.subject}/eeg/{stem}_events.tsv",
                "session_car": str((car_dir / SESSION_FILE).relative_to(self.out)),
                "sealed_manifest": rec.manifest,
                "first_t0_ns": first_t0,
                "chunks": chunk_list,
                "binding": {
                    "signature": device.signature if device else None,
                    "deadline": device.deadline if device else None,
                    "registry": source.deployment.devices,
                    "chain_id": source.chain_id,
                },
                "consent": {
                    "message": account.consent_message if account else None,
                    "signature": account.consent_signature if account else None,
                },
                "samples": sidecar_samples,
            },
        )
        self._flush()


def _chunk_signatures(decoded: list[tuple[CID, Any]]) -> list[dict[str, Any]]:
    seqs: dict[CID, int] = {}
    signatures: dict[CID, str] = {}
    for cid, value in decoded:
        if isinstance(value, dict) and value.get("type") == CHUNK_TYPE:
            seqs[cid] = int(value["seq"])
        elif isinstance(value, dict) and value.get("type") == SIGNATURE_TYPE:
            signatures[value["signs"]] = bytes(value["signature"]).hex()
    return [{"seq": seq, "cid": str(cid), "signature": signatures.get(cid)} for cid, seq in seqs.items()]


def export_dataset(
    source: ExportSource,
    out: Path,
    *,
    projects: list[int] | None = None,
    overwrite: bool = False,
    fmt: str = "EDF",
    progress: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Write the BIDS dataset of the selected samples to ``out`` (``fmt``: EDF or BrainVision).

    Raises
    ------
    ExportError
        ``out`` exists and is not empty (without ``overwrite``), or nothing qualifies.
    """
    out = Path(out)
    if fmt not in FORMATS:
        raise ConfigurationError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} exists and is not empty (use --overwrite to replace it)")
        if not (out / "dataset_description.json").exists():
            raise ExportError(f"refusing to overwrite {out}: it is not a dataset written by mindprint")
    summary = ExportSummary(out)
    recordings = _selection(source, projects, summary)
    if not recordings:
        raise ExportError(f"nothing to export: no accepted, consented, anchored samples ({summary.skipped or 'none'})")
    # written beside OUT and moved into place at the end: an interrupted export leaves no
    # half-dataset under OUT
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        exporter = _Exporter(source, staging, fmt)
        subjects: set[str] = set()
        for done, rec in enumerate(recordings, 1):
            try:
                data_key = source.keys.data_key(rec.session, source.recipient)
            except CryptoError as err:  # crypto-shredded (erased) or never granted to this key
                logger.warning("session %s skipped: %s", rec.session, err)
                summary.skip("key erased or not granted", len(rec.cids))
                continue
            exporter.recording(rec, data_key)  # a sealed block failing authentication is an error
            subjects.add(rec.subject)
            summary.recordings += 1
            summary.samples += len(rec.cids)
            if progress is not None:
                progress(done, len(recordings))
        exporter._flush(force=True)
        if exporter.writer is not None:
            exporter.writer.close()
        if summary.recordings == 0:
            raise ExportError("nothing to export: every selected session's key was erased or not granted")
        _dataset_files(source, staging, exporter, summary, sorted(subjects))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def _dataset_files(
    source: ExportSource, out: Path, exporter: _Exporter, summary: ExportSummary, subjects: list[str]
) -> None:
    deployment = source.deployment
    mne_bids.make_dataset_description(
        path=out,
        name="mindprint verified EEG labels",
        dataset_type="raw",
        data_license="CC-BY-4.0",
        authors=["mindprint contributors (pseudonymous)"],
        generated_by=[{"Name": "mindprint", "Version": __version__, "Description": "mindprint export"}],
        overwrite=True,
        verbose="error",
    )
    description = json.loads((out / "dataset_description.json").read_text())
    description["MindprintProvenance"] = {
        "chain_id": source.chain_id,
        "contracts": {
            "ProvenanceRegistry": deployment.registry,
            "DeviceRegistry": deployment.devices,
            "RewardToken": deployment.token,
            "RewardDistributor": deployment.distributor,
        },
        "batches": [exporter.batches[root] for root in sorted(exporter.batches)],
        "samples": summary.samples,
        "recordings": summary.recordings,
        "digests": DIGESTS,
    }
    _json(out / "dataset_description.json", description)
    _json(
        out / "derivatives" / "mindprint" / "dataset_description.json",
        {
            "Name": "mindprint features, labels and scores",
            "BIDSVersion": description.get("BIDSVersion", "1.10.0"),
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "mindprint", "Version": __version__}],
        },
    )
    (out / ".bidsignore").write_text("*_provenance.json\n")
    (out / "README").write_text(
        README.format(samples=summary.samples, recordings=summary.recordings, participants=len(subjects))
    )
    summary.participants = len(subjects)

    def participants(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[["participant_id"]].sort_values("participant_id")

    _rewrite_tsv(out / "participants.tsv", participants)
    _json(
        out / "participants.json",
        {
            "participant_id": {
                "Description": "pseudonymous participant ID (HMAC of the wallet address under a platform secret)"
            }
        },
    )
    lines = [f"{sha256_file(out / p)}  {p.as_posix()}\n" for p in iter_files(out) if p.as_posix() != DIGESTS]
    (out / DIGESTS).parent.mkdir(parents=True, exist_ok=True)
    (out / DIGESTS).write_text("".join(lines))


README = """mindprint verified EEG labels
=============================

{samples} labeled samples in {recordings} recordings from {participants} pseudonymous participants.
Every sample was verified on arrival (device and wallet signatures, the signal pipeline
re-run, liveness, replay check, attention), anchored on chain in a Merkle batch, and is
shared with its contributor's signed consent.

- EEG: sub-*/eeg/*_eeg.edf or .vhdr (BIDS-EEG, written by mne-bids); labels and scores in the
  events.tsv files (one row per sample), channel quality in channels.tsv.
- Provenance: sub-*/eeg/*_provenance.json (chunk and sample CIDs, device signatures,
  Merkle proofs, anchoring transactions) and sourcedata/mindprint/**/session.car (the
  device-signed blocks the EEG comes from).
- Features: derivatives/mindprint/features.parquet

Check everything (bytes against CIDs, signatures, chunk chains, Merkle proofs against the
on-chain roots, labels against samples):

    mindprint verify . --rpc-url URL        # or without --rpc-url for the offline checks

Load the features:

    import pandas as pd
    table = pd.read_parquet("derivatives/mindprint/features.parquet")
    features = pd.DataFrame([dict(m) for m in table.features], index=table.sample_cid)

Load a recording with its labels:

    from mne_bids import BIDSPath, read_raw_bids
    raw = read_raw_bids(BIDSPath(subject=..., task="labeling", run=1, datatype="eeg", root="."))
"""


def pseudonym_key(platform_dir: Path) -> bytes:
    """The platform's secret for participant pseudonyms (created once, mode 0600)."""
    return load_or_create_secret(Path(platform_dir) / "pseudonym.key", lambda: os.urandom(32), "pseudonym key")


def platform_source(
    engine: Engine,
    platform_dir: Path,
    blockstore: Blockstore,
    keys: KeyStore,
    recipient: RecipientKey,
    *,
    deployment: Deployment | None = None,
    chain_id: int | None = None,
    pseudonym_secret: bytes | None = None,
) -> ExportSource:
    """An :class:`ExportSource` over a platform data directory (``MINDPRINT_HOME/platform``).

    ``pseudonym_secret`` is the platform's (``Platform.pseudonym_key``); without it, the
    one created in the data directory."""
    platform_dir = Path(platform_dir)
    if deployment is None:
        files = sorted(platform_dir.glob(f"deployment-{chain_id if chain_id is not None else '*'}.json"))
        if len(files) != 1:
            raise ConfigurationError(
                f"found {len(files)} contract deployments in {platform_dir}; name the chain with --chain-id"
                if files
                else f"no contract deployment in {platform_dir}: run `mindprint serve` first"
            )
        deployment = Deployment.load(files[0])
    return ExportSource(
        engine=engine,
        blockstore=blockstore,
        keys=keys,
        recipient=recipient,
        journal=engine,
        deployment=deployment,
        pseudonym_key=pseudonym_secret or pseudonym_key(platform_dir),
        chain_id=deployment.chain_id,
    )


def grant_sessions(source: ExportSource, researcher_public: bytes, *, projects: list[int] | None = None) -> int:
    """Wrap the data keys of every exportable session for a researcher (operator side).

    ``source.recipient`` must be the platform key. Returns the number of sessions granted.
    """
    from mindprint.ledger.crypto import unwrap_key, wrap_key

    summary = ExportSummary(Path("."))
    granted = 0
    for recording in _selection(source, projects, summary):
        try:
            wrapped = next(
                w for w in source.keys.wrapped(recording.session) if w.recipient == source.recipient.public_key
            )
        except (CryptoError, StopIteration):
            continue  # erased, or not the platform's to give
        data_key = unwrap_key(wrapped, source.recipient, recording.session)
        source.keys.add(recording.session, wrap_key(data_key, researcher_public, recording.session))
        granted += 1
    return granted


def zip_dataset(root: Path, archive: Path) -> Path:
    """Zip a dataset deterministically (sorted names, fixed timestamps): same export, same bytes."""
    import zipfile

    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name in iter_files(root):
            info = zipfile.ZipInfo(f"{root.name}/{name.as_posix()}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with (root / name).open("rb") as source, bundle.open(info, "w") as target:
                shutil.copyfileobj(source, target, 1 << 20)
    return archive

"""Researcher export at scale: 10,000 samples exported (samples/s, peak memory) and verified.

    .venv/bin/python benchmarks/export.py [--samples 10000] [--per-session 50]

Setup (not timed): a platform data directory with ``samples / per-session`` contributor
sessions of real Cyton EEG (60 s each, signed by their own device keys), each with
``per-session`` signed samples (the companion's ``build_sample``: pipeline run and both
signatures), sealed into the blockstore, stored as accepted and consented, and anchored
on anvil (a real chain on loopback) in Merkle batches of 1024.

Timed, each in its own process (peak RSS of that process):
- ``mindprint export`` of everything (decrypt, BIDS via mne-bids, provenance, Parquet,
  digests);
- ``mindprint verify`` of the dataset against anvil;
- the peer: mne-bids ``write_raw_bids`` alone for the same recordings and events (no
  decryption, provenance, Parquet or digests) — what the provenance costs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import resource
import subprocess
import tempfile
import time

import numpy as np
from eth_account import Account
from eth_account.messages import encode_defunct

from mindprint.companion.samples import build_sample
from mindprint.device.keys import DeviceKey
from mindprint.device.openbci import read_openbci_gui_csv
from mindprint.device.session import SESSION_FILE
from mindprint.export.bids import platform_source
from mindprint.labeling.consent import consent_message
from mindprint.labeling.store import Account as AccountRow
from mindprint.labeling.store import Device, Project, Submission, TaskItem, make_engine, migrate, sessions, utcnow
from mindprint.ledger.anchoring import Anchorer
from mindprint.ledger.blockstore import Blockstore
from mindprint.ledger.chain import ChainClient, deploy_contracts
from mindprint.ledger.crypto import KeyStore, RecipientKey, new_data_key, wrap_key
from mindprint.ledger.sealing import seal_session
from mindprint.protocol.formats import device_typed_data
from tests.conftest import CYTON_CSV
from tests.services import ANVIL_KEY, anvil_node
from tests.test_samples import T0, real_session

SECONDS = 60


def setup(home: Path, rpc_url: str, n_samples: int, per_session: int) -> None:
    platform_dir = home / "platform"
    platform_dir.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{home / 'platform.db'}")
    migrate(engine)
    store, keys = Blockstore(platform_dir / "blocks"), KeyStore(platform_dir / "keys")
    platform_key = RecipientKey.generate()
    (platform_dir / "platform_x25519.key").write_bytes(platform_key.private_bytes())
    (platform_dir / "platform_x25519.key").chmod(0o600)
    chain = ChainClient.connect(rpc_url, ANVIL_KEY)
    deployment = deploy_contracts(chain)
    deployment.save(platform_dir / f"deployment-{chain.chain_id}.json")
    eeg = read_openbci_gui_csv(CYTON_CSV).data[1:9] * 1e-6
    n_sessions = n_samples // per_session
    cids: list[str] = []
    started = time.perf_counter()
    with sessions(engine)() as db:
        db.add(AccountRow(address="0x" + "11" * 20, role="requester"))
        db.add(
            Project(id=1, owner="0x" + "11" * 20, name="bench", label_schema={"kind": "classes", "classes": ["a", "b"]})
        )
        db.add_all([TaskItem(id=i + 1, project_id=1, content={"text": f"item {i}"}) for i in range(per_session)])
        db.commit()
        for s in range(n_sessions):
            wallet, key = Account.create(), DeviceKey.generate()
            session_dir = home / "sessions" / str(s)
            offset = (s * 7) % max(1, eeg.shape[1] // 250 - SECONDS)
            real_session(session_dir, key, seconds=SECONDS, offset_seconds=offset)
            car = (session_dir / SESSION_FILE).read_bytes()
            issued = utcnow()
            message = consent_message("localhost", wallet.address, True, issued)
            deadline = int(time.time()) + 86400
            binding = Account.sign_typed_data(
                wallet.key,
                full_message=device_typed_data(
                    key.public_key, wallet.address, deadline, chain.chain_id, deployment.devices
                ),
            ).signature.to_0x_hex()
            db.add(
                AccountRow(
                    address=wallet.address,
                    role="contributor",
                    consent=True,
                    consent_message=message,
                    consent_signature=wallet.sign_message(encode_defunct(text=message)).signature.to_0x_hex(),
                )
            )
            db.add(
                Device(
                    device=key.public_key.hex(),
                    contributor=wallet.address,
                    signature=binding,
                    deadline=deadline,
                    revoked=False,
                )
            )
            session_id = None
            rows = []
            for n in range(per_session):
                stimulus = T0 + int((1.5 + n * (SECONDS - 5) / per_session) * 1e9)
                signed = build_sample(
                    session_dir,
                    key,
                    wallet,
                    task=n + 1,
                    label="ab"[n % 2],
                    stimulus_ns=stimulus,
                    response_ns=stimulus + 600_000_000,
                    chain_id=chain.chain_id,
                )
                value = signed.value
                session_id = str(value["session"])
                rows.append(
                    Submission(
                        cid=str(signed.cid),
                        task_id=n + 1,
                        contributor=wallet.address,
                        device=key.public_key.hex(),
                        label={"value": value["label"]},
                        status="accepted",
                        scores={"authenticity": 1.0, "liveness": 0.99, "attention": 0.9, "uniqueness": 1.0},
                        reasons={"reasons": []},
                        engagement=float(value["features"]["engagement"]),
                        session=session_id,
                        sample_block=signed.block,
                        device_signature=signed.device_signature.hex(),
                        wallet_signature="0x" + signed.wallet_signature.hex(),
                    )
                )
                cids.append(str(signed.cid))
            assert session_id is not None
            data_key = new_data_key()
            keys.add(session_id, wrap_key(data_key, platform_key.public_key, session_id))
            manifest = str(seal_session(car, session_id, data_key, store))
            for row in rows:
                row.sealed_manifest = manifest
            db.add_all(rows)
            db.commit()
            if (s + 1) % 20 == 0:
                print(
                    f"  setup: {s + 1}/{n_sessions} sessions, {len(cids)} samples ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
    anchorer = Anchorer(engine, store, chain, deployment.registry)  # the journal: the platform database
    anchorer.enqueue(cids)
    anchorer.run(1024)
    print(f"  anchored {anchorer.stats()}", flush=True)
    anchorer.close()


def phase(args: argparse.Namespace) -> None:
    home = Path(args.home)
    if args.phase == "export":
        from mindprint.export.bids import export_dataset

        source = platform_source(
            make_engine(f"sqlite:///{home / 'platform.db'}"),
            home / "platform",
            Blockstore(home / "platform" / "blocks"),
            KeyStore(home / "platform" / "keys"),
            RecipientKey.from_private_bytes((home / "platform" / "platform_x25519.key").read_bytes()),
        )
        start = time.perf_counter()
        summary = export_dataset(source, home / "dataset")
        result = {"seconds": time.perf_counter() - start, "samples": summary.samples, "recordings": summary.recordings}
    elif args.phase == "verify":
        from mindprint.export.verify import verify_dataset

        chain = ChainClient.connect(args.rpc_url, Account.create().key)
        start = time.perf_counter()
        report = verify_dataset(home / "dataset", chain=chain)
        result = {
            "seconds": time.perf_counter() - start,
            "samples": report.samples,
            "ok": report.ok,
            "problems": len(report.problems),
        }
    elif args.phase == "mne-bids":
        import mne_bids

        from mindprint.export.session_file import session_to_raw

        start = time.perf_counter()
        samples = 0
        for n, session_dir in enumerate(sorted((home / "sessions").iterdir(), key=lambda p: int(p.name))):
            raw = session_to_raw(session_dir)
            raw.set_annotations(None)
            onsets = np.linspace(375, (SECONDS - 4) * 250, args.per_session).astype(int)
            events = np.stack([onsets, np.zeros_like(onsets), 1 + np.arange(args.per_session) % 2], axis=1)
            path = mne_bids.BIDSPath(subject=f"{n:04d}", task="labeling", run=1, datatype="eeg", root=home / "peer")
            mne_bids.write_raw_bids(
                raw,
                path,
                events=events,
                event_id={"a": 1, "b": 2},
                format="EDF",
                allow_preload=True,
                overwrite=True,
                verbose="error",
            )
            samples += len(onsets)
        result = {"seconds": time.perf_counter() - start, "samples": samples}
    else:
        start = time.perf_counter()
        import mindprint.export.verify  # noqa: F401 - the baseline: interpreter + libraries

        result = {"seconds": time.perf_counter() - start, "samples": 0}
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_phase(name: str, home: Path, rpc_url: str, per_session: int) -> dict[str, float]:
    output = subprocess.run(
        [
            sys.executable,
            __file__,
            "--phase",
            name,
            "--home",
            str(home),
            "--rpc-url",
            rpc_url,
            "--per-session",
            str(per_session),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--per-session", type=int, default=50)
    parser.add_argument("--phase", choices=["export", "verify", "mne-bids", "baseline"])
    parser.add_argument("--home")
    parser.add_argument("--rpc-url")
    parser.add_argument("--keep", type=Path, help="copy the platform directory and dataset here (for profiling)")
    args = parser.parse_args()
    if args.phase:
        phase(args)
        return
    with tempfile.TemporaryDirectory(prefix="mindprint-bench-export-") as tmp, anvil_node(Path(tmp)) as rpc_url:
        home = Path(tmp) / "home"
        started = time.perf_counter()
        setup(home, rpc_url, args.samples, args.per_session)
        print(f"setup: {time.perf_counter() - started:.0f} s", flush=True)
        baseline = run_phase("baseline", home, rpc_url, args.per_session)
        exported = run_phase("export", home, rpc_url, args.per_session)
        verified = run_phase("verify", home, rpc_url, args.per_session)
        peer = run_phase("mne-bids", home, rpc_url, args.per_session)
        size = sum(p.stat().st_size for p in (home / "dataset").rglob("*") if p.is_file())
        assert verified.get("ok") and verified["samples"] == exported["samples"], verified
        rows = [
            "| step | samples | recordings | seconds | samples/s | peak RSS (process) |",
            "|---|---|---|---|---|---|",
            f"| mindprint export | {exported['samples']} | {exported['recordings']} | {exported['seconds']:.1f} | "
            f"{exported['samples'] / exported['seconds']:.0f} | {exported['peak_rss_mib']:.0f} MiB |",
            f"| mindprint verify (anvil) | {verified['samples']} | {exported['recordings']} | {verified['seconds']:.1f} | "
            f"{verified['samples'] / verified['seconds']:.0f} | {verified['peak_rss_mib']:.0f} MiB |",
            f"| peer: mne-bids write_raw_bids alone | {peer['samples']} | {exported['recordings']} | {peer['seconds']:.1f} | "
            f"{peer['samples'] / peer['seconds']:.0f} | {peer['peak_rss_mib']:.0f} MiB |",
            f"| baseline: interpreter + libraries | — | — | — | — | {baseline['peak_rss_mib']:.0f} MiB |",
        ]
        print("\n".join(rows))
        if args.keep:
            import shutil

            shutil.copytree(home, args.keep, dirs_exist_ok=True)
        print(
            f"\nexport / mne-bids alone: {exported['seconds'] / peer['seconds']:.2f}× the time "
            f"(provenance, decryption, Parquet, digests); dataset {size / 2**20:.0f} MiB; "
            f"export memory above baseline: {exported['peak_rss_mib'] - baseline['peak_rss_mib']:.0f} MiB; verify: ok"
        )


if __name__ == "__main__":
    main()

"""Federated training with differential privacy and secure aggregation, against its peers.

Real EEG: the OpenBCI Cyton recording in ``tests/data/eeg`` cut into 4 s epochs that the
edge pipeline filters one by one (as on a contributor's device), then into 1 s windows
labeled eyes closed / eyes open (``mindprint.federated.data``). Evaluation is 3-fold over
6 s blocks of time (a test window never shares a block with a training window). In each
fold the training windows are dealt to ``--clients`` simulated contributors (disjoint
shares). Three ways to learn, the same model, scored on the same held-out windows:

- **federated**: ``mindprint serve`` (real uvicorn, its own process, SQLite, embedded
  chain) runs ``--rounds`` rounds; the clients (threads of this process, each with its
  own wallet, signed in over loopback) train with DP-SGD (Opacus) and send only masked
  updates (secure aggregation); the platform unmasks the sum, updates the model, pins it
  and anchors the round record.
- **centralised**: all training windows on one machine, plain SGD, no privacy.
- **local-only**: each client alone on its share, plain SGD; the mean over clients.

Both baselines get the best of a grid of learning rates and epochs (``GRID``), chosen by
their mean accuracy on the held-out folds themselves: an optimistic upper bound for them,
so the comparison is conservative for federated training, which runs one fixed recipe.

Reports accuracy per fold, ε spent per client (RDP accountant, δ = 1e-5), bytes sent per
client per round, round time. Last line:
``federated: acc_federated=A acc_central=C acc_local=L epsilon=E``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# run as a script, this folder comes first on sys.path and its signal.py would shadow the stdlib's
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import os
import signal
import subprocess
import tempfile
import threading
import time
import warnings

import httpx
import numpy as np
import torch
from eth_account import Account
from eth_account.messages import encode_defunct

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mindprint.companion.client import PlatformClient
from mindprint.federated.client import FederatedClient
from mindprint.federated.data import LabeledWindows, cyton_eyes_closed
from mindprint.federated.model import decode_model, new_model
from mindprint.federated.training import PrivacyLedger, accuracy, train_plain
from tests.services import free_port

CYTON = ROOT / "tests" / "data" / "eeg" / "openbci_cyton" / "OpenBCI_GUI-v6-blinks-jawClench-alpha.txt"
GRID = [(lr, epochs) for lr in (0.01, 0.05, 0.2, 0.5) for epochs in (5, 20, 60)]
ROUND = {"local_epochs": 1, "batch_size": 8, "lr": 0.5, "clip": 1.0, "noise_multiplier": 3.0, "delta": 1e-5}


def _token(base: str, account) -> str:  # type: ignore[no-untyped-def]
    issued = httpx.post(f"{base}/auth/nonce", json={"address": account.address}).json()
    signature = account.sign_message(encode_defunct(text=issued["message"])).signature.to_0x_hex()
    answer = httpx.post(f"{base}/auth/verify", json={"message": issued["message"], "signature": signature})
    return str(answer.json()["access_token"])


def start_server(home: Path, operator: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "MINDPRINT_HOME": str(home),
        "MINDPRINT_DATABASE_URL": f"sqlite:///{home / 'platform.db'}",
        "MINDPRINT_OPERATORS": operator.lower(),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "mindprint.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError("mindprint serve did not start")


def federated_fold(
    base: str, operator, shares, rounds: int, fold: int
) -> tuple[str, list[FederatedClient], list[float]]:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {_token(base, operator)}"}
    clients = []
    for i, share in enumerate(shares):
        platform = PlatformClient(base, Account.create())
        platform.sign_in()
        clients.append(FederatedClient(platform, share, PrivacyLedger(), poll=0.05, seed=fold * 1000 + i * 7919))
    round_seconds = []
    model_cid = ""
    for _ in range(rounds):
        started = time.perf_counter()
        answer = httpx.post(
            f"{base}/federated/rounds",
            json={**ROUND, "min_clients": len(clients), "max_clients": len(clients), "phase_seconds": 60},
            headers=headers,
        )
        answer.raise_for_status()
        outcomes: list[object] = [None] * len(clients)

        def run(i: int) -> None:
            outcomes[i] = clients[i].join(int(answer.json()["id"]))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        phases = {getattr(o, "phase", None) for o in outcomes}
        if phases != {"done"}:
            raise RuntimeError(f"round ended {phases}")
        model_cid = str(outcomes[0].model_cid)  # type: ignore[union-attr]
        round_seconds.append(time.perf_counter() - started)
    return model_cid, clients, round_seconds


def baselines(
    folds: list[tuple[LabeledWindows, LabeledWindows, list[LabeledWindows]]],
) -> tuple[list[float], list[float], str]:
    """Centralised and local-only accuracy per fold, each at its best grid point (mean over folds)."""
    best_central: tuple[float, list[float], str] = (-1.0, [], "")
    best_local: tuple[float, list[float], str] = (-1.0, [], "")
    for lr, epochs in GRID:
        central, local = [], []
        for train, held, shares in folds:
            fit = train_plain(new_model(seed=0), train.x, train.y, epochs=epochs, lr=lr, batch_size=8)
            central.append(accuracy(fit, held.x, held.y))
            local.append(
                float(
                    np.mean(
                        [
                            accuracy(
                                train_plain(new_model(seed=0), s.x, s.y, epochs=epochs, lr=lr, batch_size=8),
                                held.x,
                                held.y,
                            )
                            for s in shares
                        ]
                    )
                )
            )
        if np.mean(central) > best_central[0]:
            best_central = (float(np.mean(central)), central, f"lr {lr}, {epochs} epochs")
        if np.mean(local) > best_local[0]:
            best_local = (float(np.mean(local)), local, f"lr {lr}, {epochs} epochs")
    return best_central[1], best_local[1], f"centralised at {best_central[2]}, local-only at {best_local[2]}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--folds", type=int, default=3, help="how many of the 3 time-block folds to run")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    data = cyton_eyes_closed(CYTON)
    print(
        f"{len(data)} labeled 1 s windows ({int(data.y.sum())} eyes closed), {args.clients} clients, {args.rounds} rounds"
    )
    operator = Account.create()
    results = []
    rows = [
        "| fold | train / test windows | federated (DP, secagg) | centralised | local-only (mean) | ε per client | bytes/client/round | round time | untrained model |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        server, base = start_server(Path(tmp) / "platform", operator.address)
        try:
            folds = []
            for fold in range(args.folds):
                test = np.floor(data.t / 6) % 3 == fold
                train, held = data.subset(np.where(~test)[0]), data.subset(np.where(test)[0])
                order = np.random.default_rng(fold).permutation(len(train))
                folds.append((train, held, [train.subset(order[i :: args.clients]) for i in range(args.clients)]))
            centrals, locals_, chosen = baselines(folds)
            print(f"baselines: {chosen} (best of {len(GRID)} grid points)", flush=True)
            for fold, (train, held, shares) in enumerate(folds):
                initial = accuracy(new_model(seed=0), held.x, held.y)
                central, local = centrals[fold], locals_[fold]
                cid, clients, seconds = federated_fold(base, operator, shares, args.rounds, fold)
                block = httpx.get(
                    f"{base}/federated/models/{cid}", headers={"Authorization": f"Bearer {_token(base, operator)}"}
                ).json()["block"]
                import base64

                federated = accuracy(decode_model(base64.b64decode(block)), held.x, held.y)
                epsilon = max(c.ledger.epsilon(ROUND["delta"]) for c in clients)
                sent = float(np.mean([c.bytes_sent for c in clients])) / args.rounds
                results.append((federated, central, local, epsilon))
                rows.append(
                    f"| {fold} | {len(train)} / {len(held)} | {federated:.3f} | {central:.3f} | {local:.3f} | {epsilon:.2f} | {sent:,.0f} | {np.median(seconds):.2f} s | {initial:.3f} |"
                )
                print(rows[-1], flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    a, c, loc, e = np.mean(results, axis=0)
    print("\n" + "\n".join(rows))
    print(
        f"\nmean over folds: federated {a:.3f}, centralised {c:.3f} (federated − centralised = {a - c:+.3f}), local-only {loc:.3f} (federated / local = {a / loc:.2f}×), ε {e:.2f}"
    )
    print(f"federated: acc_federated={a:.3f} acc_central={c:.3f} acc_local={loc:.3f} epsilon={e:.2f}")


if __name__ == "__main__":
    main()

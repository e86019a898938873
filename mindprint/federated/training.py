"""Local training: plain (centralised and local-only baselines) and DP-SGD with Opacus.

A contributor's companion trains the round's model on its own windows with DP-SGD
(:func:`train_private`: per-window gradients clipped to ``clip``, Gaussian noise of
``noise_multiplier · clip``, Poisson sampling) and sends only the change of the weights,
masked (:mod:`mindprint.federated.secagg`). The privacy spent is accounted with Opacus's
RDP accountant; its history is kept by the companion across rounds
(:class:`PrivacyLedger`), so ε is the contributor's total, not one round's.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mindprint.core.errors import InvalidRequest
from mindprint.federated.model import ShallowAlphaNet, flat_parameters

__all__ = ["PrivacyLedger", "TrainParams", "accuracy", "train_plain", "train_private"]


@dataclass(frozen=True, slots=True)
class TrainParams:
    """What a round asks of every client (published with the round)."""

    local_epochs: int = 2
    batch_size: int = 8
    lr: float = 0.05
    clip: float = 1.0
    noise_multiplier: float = 1.0
    delta: float = 1e-5

    def to_dict(self) -> dict[str, Any]:
        return {
            "local_epochs": self.local_epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "clip": self.clip,
            "noise_multiplier": self.noise_multiplier,
            "delta": self.delta,
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> TrainParams:
        try:
            params = cls(**{k: type(getattr(cls(), k))(value[k]) for k in cls().to_dict()})
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidRequest(f"round parameters are malformed: {err}") from err
        if not (
            1 <= params.local_epochs <= 50
            and 1 <= params.batch_size <= 4096
            and 0 < params.lr <= 10
            and 0 < params.clip <= 100
            and 0 <= params.noise_multiplier <= 100
            and 0 < params.delta < 1
        ):
            raise InvalidRequest(f"round parameters out of range: {params}")
        return params


def accuracy(model: nn.Module, x: NDArray[np.float32], y: NDArray[np.int64]) -> float:
    with torch.no_grad():
        predicted = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float(np.mean(predicted == y))


def train_plain(
    model: ShallowAlphaNet,
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    momentum: float = 0.0,
    seed: int = 0,
) -> ShallowAlphaNet:
    """Non-private SGD (the centralised and local-only baselines)."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss(model(xb), yb).backward()
            optimizer.step()
    model.eval()
    return model


@dataclass
class PrivacyLedger:
    """A contributor's DP-SGD history across rounds: (noise multiplier, sample rate, steps)."""

    path: Path | None = None
    history: list[tuple[float, float, int]] = field(default_factory=list)
    rounds: list[str] = field(default_factory=list)
    opted_out: bool = False

    @classmethod
    def load(cls, path: Path) -> PrivacyLedger:
        if not path.exists():
            return cls(path)
        value = json.loads(path.read_text())
        history = [(float(h[0]), float(h[1]), int(h[2])) for h in value["history"]]
        return cls(path, history, list(value["rounds"]), bool(value["opted_out"]))

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(
                json.dumps({"history": self.history, "rounds": self.rounds, "opted_out": self.opted_out}, indent=1)
            )

    def epsilon(self, delta: float) -> float:
        """ε spent so far at ``delta`` (RDP accountant over the whole history)."""
        if not self.history:
            return 0.0
        from opacus.accountants import RDPAccountant

        accountant = RDPAccountant()
        accountant.history = list(self.history)
        return float(accountant.get_epsilon(delta))

    def epsilon_after(self, step: tuple[float, float, int], delta: float) -> float:
        """ε if ``step`` were spent too (to refuse a round that would exceed the budget)."""
        trial = PrivacyLedger(None, [*self.history, step])
        return trial.epsilon(delta)


def private_step(params: TrainParams, n: int) -> tuple[float, float, int]:
    """The (noise multiplier, sample rate, steps) one round of local DP-SGD on ``n`` windows spends."""
    batch = min(params.batch_size, n)
    steps_per_epoch = max(1, int(np.ceil(n / batch)))
    return (params.noise_multiplier, batch / n, steps_per_epoch * params.local_epochs)


def train_private(
    model: ShallowAlphaNet, x: NDArray[np.float32], y: NDArray[np.int64], params: TrainParams, *, seed: int = 0
) -> tuple[NDArray[np.float32], tuple[float, float, int]]:
    """DP-SGD (Opacus) from the model's current weights; returns (weight change, privacy step spent)."""
    if len(y) == 0:
        raise InvalidRequest("no labeled windows to train on")
    from opacus import PrivacyEngine

    start = flat_parameters(model)
    torch.manual_seed(seed)
    batch = min(params.batch_size, len(y))
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=params.lr)
    engine = PrivacyEngine(accountant="rdp", secure_mode=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about secure RNG and full backward hooks
        private, optimizer, loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=params.noise_multiplier,
            max_grad_norm=params.clip,
            poisson_sampling=True,
        )
        loss = nn.CrossEntropyLoss()
        private.train()
        for _ in range(params.local_epochs):
            for xb, yb in loader:
                if len(yb) == 0:
                    continue
                optimizer.zero_grad()
                loss(private(xb), yb).backward()
                optimizer.step()
    private.eval()
    step = engine.accountant.history[0] if len(engine.accountant.history) == 1 else private_step(params, len(y))
    delta = flat_parameters(model) - start
    return delta.astype(np.float32), (float(step[0]), float(step[1]), int(step[2]))

"""A contributor's side of a federated round: train on its own EEG, send only a masked update.

:class:`FederatedClient` joins the platform's round over the ordinary API (signed in with
the contributor's wallet), refuses when the contributor opted out or when the round would
take their privacy spent past the round's or their own budget, trains with DP-SGD on its
local windows and takes part in secure aggregation. Nothing else leaves the device: two
public keys, Shamir shares encrypted to the other clients, the masked update, and the
unmasking shares.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mindprint.companion.client import PlatformClient
from mindprint.core.errors import MindprintError
from mindprint.federated.data import LabeledWindows
from mindprint.federated.model import decode_model
from mindprint.federated.secagg import SecAggClient
from mindprint.federated.training import PrivacyLedger, TrainParams, private_step, train_private

__all__ = ["FederatedClient", "FederatedError", "RoundOutcome"]


class FederatedError(MindprintError):
    """The client cannot or will not take part (opted out, budget, round state)."""


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    round_id: int
    phase: str  # done | failed | dropped (this client stopped on purpose)
    model_cid: str | None
    epsilon: float
    bytes_sent: int
    seconds: float


class FederatedClient:
    def __init__(
        self,
        platform: PlatformClient,
        windows: LabeledWindows,
        ledger: PrivacyLedger,
        *,
        max_epsilon: float | None = None,
        poll: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.platform = platform
        self.windows = windows
        self.ledger = ledger
        self.max_epsilon = max_epsilon
        self.poll = poll
        self.seed = seed
        self.bytes_sent = 0

    def _send(self, round_id: int, step: str, body: dict[str, Any]) -> dict[str, Any]:
        import json

        self.bytes_sent += len(json.dumps(body))
        return dict(self.platform.call("POST", f"/federated/rounds/{round_id}/{step}", json=body))

    def _wait(self, round_id: int, leaving: str, deadline: float) -> dict[str, Any]:
        while True:
            state = dict(self.platform.call("GET", f"/federated/rounds/{round_id}"))
            if state["phase"] != leaving:
                return state
            if time.monotonic() > deadline:
                raise FederatedError(f"round {round_id} stayed at step {leaving} past this client's timeout")
            time.sleep(self.poll)

    def check_budget(self, params: dict[str, Any]) -> tuple[float, float, int]:
        """The privacy step this round would spend; raises when it may not be spent."""
        if self.ledger.opted_out:
            raise FederatedError("this contributor opted out of federated training")
        train = TrainParams.from_dict(params)
        step = private_step(train, len(self.windows))
        after = self.ledger.epsilon_after(step, train.delta)
        budget = min(float(params.get("epsilon_budget", 8.0)), self.max_epsilon or float("inf"))
        if after > budget:
            raise FederatedError(
                f"this round would bring ε to {after:.2f} (δ={train.delta:g}), over the budget of {budget:g}"
            )
        return step

    def join(
        self, round_id: int | None = None, *, stop_after: str | None = None, timeout: float = 600.0
    ) -> RoundOutcome:
        """Take part in a round from its ``keys`` step to its end (``stop_after`` drops out on purpose)."""
        began = time.monotonic()
        deadline = began + timeout
        path = f"/federated/rounds/{round_id}" if round_id else "/federated/rounds/latest"
        state = dict(self.platform.call("GET", path))
        round_id = int(state["id"])
        if state["phase"] != "keys":
            raise FederatedError(f"round {round_id} is at step {state['phase']}: it no longer takes clients")
        if len(self.windows) == 0:
            raise FederatedError("no labeled windows on this device to train on")
        self.check_budget(state["params"])
        delta = float(state["params"]["delta"])
        me = self.platform.wallet.address
        secagg = SecAggClient(me, str(round_id))
        keys = secagg.advertise()
        self._send(round_id, "keys", {"c_pk": keys["c_pk"].hex(), "s_pk": keys["s_pk"].hex()})
        if stop_after == "keys":
            return self._outcome(round_id, "dropped", None, began, delta)

        state = self._wait(round_id, "keys", deadline)
        if state["phase"] != "shares" or me not in state["members"].get("u1", []):
            return self._outcome(round_id, state["phase"], None, began, delta)
        u1 = state["members"]["u1"]
        if state["threshold"] <= len(u1) // 2:
            raise FederatedError(
                f"threshold {state['threshold']} of {len(u1)} clients is too low to keep updates secret"
            )
        peer_keys = {
            v: {"c_pk": bytes.fromhex(k["c_pk"]), "s_pk": bytes.fromhex(k["s_pk"])} for v, k in state["keys"].items()
        }
        shares = secagg.share(peer_keys, int(state["threshold"]))
        self._send(round_id, "shares", {"shares": {v: c.hex() for v, c in shares.items()}})

        # train while the others send their shares
        block = base64.b64decode(self.platform.call("GET", f"/federated/models/{state['model_cid']}")["block"])
        model = decode_model(block)
        update, spent = train_private(
            model, self.windows.x, self.windows.y, TrainParams.from_dict(state["params"]), seed=self.seed + round_id
        )
        if stop_after == "shares":
            return self._outcome(round_id, "dropped", None, began, delta)

        state = self._wait(round_id, "shares", deadline)
        if state["phase"] != "masked" or me not in state["members"].get("u2", []):
            return self._outcome(round_id, state["phase"], None, began, delta)
        masked = secagg.masked_input(update, {v: bytes.fromhex(c) for v, c in state["inbox"].items()})
        # the update leaves the device (masked) now: account for it before sending
        self.ledger.history.append(spent)
        self.ledger.rounds.append(str(round_id))
        self.ledger.save()
        self._send(round_id, "masked", {"vector": np.asarray(masked, dtype="<u4").tobytes().hex()})
        if stop_after == "masked":
            return self._outcome(round_id, "dropped", None, began, delta)

        state = self._wait(round_id, "masked", deadline)
        if state["phase"] != "unmask":
            return self._outcome(round_id, state["phase"], None, began, delta)
        u3 = state["members"]["u3"]
        if len(u3) < int(state["threshold"]):
            raise FederatedError(f"only {len(u3)} clients sent masked updates, fewer than the threshold")
        reveals = secagg.unmask(state["members"]["u2"], u3)
        self._send(round_id, "unmask", {"reveals": {v: [kind, share.hex()] for v, (kind, share) in reveals.items()}})
        state = self._wait(round_id, "unmask", deadline)
        return self._outcome(round_id, state["phase"], state.get("result_cid"), began, delta)

    def _outcome(self, round_id: int, phase: str, model: str | None, began: float, delta: float) -> RoundOutcome:
        return RoundOutcome(
            round_id, phase, model, self.ledger.epsilon(delta), self.bytes_sent, time.monotonic() - began
        )

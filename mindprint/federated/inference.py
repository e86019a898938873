"""On-device inference the platform can check.

The companion runs the current model on every epoch it signs and puts ``{"model": CID,
"output": logits}`` into the sample block, so the device's Ed25519 signature and the
wallet's EIP-712 signature cover the output together with the model's CID and the
edge pipeline's version (already in the block). The platform re-executes: it re-runs the
pipeline on the cited raw EEG (as it does for the features), loads the model by its CID
and recomputes the logits. Both sides run the same float32 code on the same filtered
epoch; across machines float32 sums may differ in the last bits, so outputs must agree
within ``TOLERANCE`` (absolute, on logits) — a tampered output (a flipped class, a
changed confidence) is far outside it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from threading import Lock
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mindprint.federated.model import ShallowAlphaNet, montage_rows, predict_epoch

__all__ = ["TOLERANCE", "ModelCache", "infer", "inference_problems"]

TOLERANCE = 1e-3


def infer(
    model: ShallowAlphaNet, cid: str, filtered_volts: NDArray[np.floating], names: Sequence[str]
) -> dict[str, Any]:
    """What a sample carries: the model's CID and its logits on the pipeline's filtered epoch."""
    rows = montage_rows(model.spec, names)
    return {"model": cid, "output": predict_epoch(model, np.asarray(filtered_volts)[rows] * 1e6)}


def inference_problems(
    claimed: dict[str, Any],
    filtered_volts: NDArray[np.floating],
    names: Sequence[str],
    load: Callable[[str], ShallowAlphaNet] | None,
) -> list[str]:
    """Re-execute the claimed inference; a list of what does not match (empty when it does)."""
    if load is None:
        return ["the sample carries an inference output but this verifier holds no models"]
    try:
        model = load(str(claimed["model"]))
        recomputed = infer(model, str(claimed["model"]), filtered_volts, names)["output"]
    except Exception as err:  # an unknown model or a montage the model cannot read
        return [f"on-device inference cannot be re-executed: {err}"]
    output = [float(v) for v in claimed["output"]]
    if len(output) != len(recomputed) or not np.allclose(output, recomputed, rtol=0, atol=TOLERANCE):
        shown = np.round(output, 4).tolist(), np.round(recomputed, 4).tolist()
        return [f"on-device inference output {shown[0]} differs from re-execution {shown[1]}"]
    return []


class ModelCache:
    """Decoded models by CID (bounded), loaded through ``fetch`` (CID → block)."""

    def __init__(self, fetch: Callable[[str], bytes], size: int = 16) -> None:
        self.fetch = fetch
        self.size = size
        self._models: OrderedDict[str, ShallowAlphaNet] = OrderedDict()
        self._lock = Lock()

    def __call__(self, cid: str) -> ShallowAlphaNet:
        from mindprint.core.ipld import cid_for_block
        from mindprint.federated.model import decode_model

        with self._lock:
            if cid in self._models:
                self._models.move_to_end(cid)
                return self._models[cid]
        block = self.fetch(cid)
        if str(cid_for_block(block)) != cid:
            raise ValueError(f"the block fetched for model {cid} has another CID")
        model = decode_model(block)
        with self._lock:
            self._models[cid] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model

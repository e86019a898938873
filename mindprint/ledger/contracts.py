"""The Vyper contracts: sources, pinned compiler, committed build artifacts.

Sources live in ``mindprint/ledger/contracts/*.vy`` and build with the Vyper version
pinned in ``constraints.txt`` for ``EVM_VERSION`` (Cancun: both py-evm, the embedded
chain, and anvil execute it; code built for a newer fork than the chain can fail
silently at deploy). ``build_artifacts`` writes ``artifacts/<Name>.json`` (ABI,
bytecode, compiler version, EVM version, source hash); the artifacts are committed and a
test recompiles and compares them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from mindprint.core.errors import LedgerError

EVM_VERSION = "cancun"
CONTRACTS = ("ProvenanceRegistry", "DeviceRegistry", "RewardToken", "RewardDistributor")
SOURCE_DIR = Path(__file__).parent / "contracts"
ARTIFACT_DIR = Path(__file__).parent / "artifacts"

__all__ = ["CONTRACTS", "EVM_VERSION", "build_artifacts", "compile_contract", "load_artifact"]


def compile_contract(name: str) -> dict[str, Any]:
    """Compile one contract with the installed Vyper (snekmate found on sys.path)."""
    source = SOURCE_DIR / f"{name}.vy"
    if not source.exists():
        raise LedgerError(f"no contract source {source}")
    command = [sys.executable, "-m", "vyper", "--evm-version", EVM_VERSION, "-f", "abi,bytecode", str(source)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LedgerError(f"vyper failed on {name}: {result.stderr.strip()}")
    abi_line, bytecode = result.stdout.strip().splitlines()
    version = subprocess.run([sys.executable, "-m", "vyper", "--version"], capture_output=True, text=True, check=True)
    return {
        "contract": name,
        "compiler": f"vyper {version.stdout.strip()}",
        "evm_version": EVM_VERSION,
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "abi": json.loads(abi_line),
        "bytecode": bytecode.strip(),
    }


def build_artifacts() -> list[Path]:
    """(Re)compile every contract into ``artifacts/``."""
    ARTIFACT_DIR.mkdir(exist_ok=True)
    written = []
    for name in CONTRACTS:
        path = ARTIFACT_DIR / f"{name}.json"
        path.write_text(json.dumps(compile_contract(name), indent=1, sort_keys=True) + "\n")
        written.append(path)
    load_artifact.cache_clear()
    return written


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """The committed ABI and bytecode of ``name``."""
    path = ARTIFACT_DIR / f"{name}.json"
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError as err:
        raise LedgerError(f"no build artifact for {name}; run `python -m mindprint.ledger.contracts`") from err


if __name__ == "__main__":  # pragma: no cover
    for artifact in build_artifacts():
        print(artifact)

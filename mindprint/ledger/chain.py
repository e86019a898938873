"""The chain client (web3.py): embedded in-process EVM or any JSON-RPC node.

One small class, :class:`ChainClient`, used the same way against the embedded chain
(eth-tester with py-evm, the zero-service default) and a real node (anvil in the tests,
any EVM chain in production). Every transaction is built, gas-estimated (a revert
surfaces here with its reason), signed locally with the operator's key, sent, and
waited for with a configurable number of confirmations. Nonces are managed locally
under a lock and resynchronised when the node disagrees; transient transport errors are
retried with exponential backoff.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound

from mindprint.core.errors import ChainError
from mindprint.ledger.contracts import load_artifact

logger = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT = (ConnectionError, TimeoutError, OSError, TimeExhausted)

__all__ = ["ChainClient", "Deployment", "TxResult", "deploy_contracts", "revert_reason"]


def revert_reason(err: BaseException) -> str | None:
    """The revert reason in a web3 / eth-tester error, if it carries one."""
    text = str(getattr(err, "message", None) or err)
    marker = "execution reverted"
    if marker in text:
        reason = text.split(marker, 1)[1].lstrip(": ").strip().strip("'\"")
        return reason or "reverted without a reason"
    if isinstance(err, ContractLogicError):
        return text
    return None


@dataclass(frozen=True, slots=True)
class TxResult:
    """A mined transaction."""

    tx_hash: str
    block_number: int
    gas_used: int
    status: int
    contract_address: str | None = None


_locks: weakref.WeakKeyDictionary[Web3, threading.RLock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _lock_for(w3: Web3) -> threading.RLock:
    with _locks_guard:
        return _locks.setdefault(w3, threading.RLock())


class ChainClient:
    """Send transactions and calls for one operator account.

    Parameters
    ----------
    w3 : Web3
        Connected Web3 instance.
    account : LocalAccount
        The operator's key (transactions are signed locally).
    confirmations : int
        Blocks (including the receipt's own) to wait for before a transaction counts.
    timeout : float
        Seconds to wait for a receipt.
    retries : int
        Attempts for transient transport errors.
    """

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        confirmations: int = 1,
        timeout: float = 120.0,
        retries: int = 4,
        backoff: float = 0.25,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.confirmations = max(1, confirmations)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._nonce: int | None = None
        # one lock per web3 instance: every client of the same in-process chain (the operator's,
        # a contributor's claim in the demo) takes turns, since eth-tester is not thread-safe
        self._lock = _lock_for(w3)
        self._serial_reads = isinstance(w3.provider, Web3.EthereumTesterProvider)
        self.embedded_tester: Any = None
        #: further funded accounts of the embedded chain (tests and demos)
        self.extra_keys: list[LocalAccount] = []

    # -- constructors ------------------------------------------------------------------
    @classmethod
    def embedded(cls, **options: Any) -> ChainClient:
        """An in-process EVM (eth-tester + py-evm) with a funded operator account."""
        from eth_tester import EthereumTester, PyEVMBackend

        backend = PyEVMBackend()
        tester = EthereumTester(backend)
        w3 = Web3(Web3.EthereumTesterProvider(tester))
        client = cls(w3, Account.from_key(backend.account_keys[0].to_bytes()), **options)
        client.embedded_tester = tester
        client.extra_keys = [Account.from_key(k.to_bytes()) for k in backend.account_keys[1:]]
        return client

    @classmethod
    def connect(cls, url: str, private_key: str | bytes, **options: Any) -> ChainClient:
        """A JSON-RPC node at ``url`` (http/https), operating as ``private_key``."""
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": options.pop("rpc_timeout", 10.0)}))
        client = cls(w3, Account.from_key(private_key), **options)
        client._retry(lambda: w3.eth.chain_id, "connect")
        return client

    # -- plumbing ------------------------------------------------------------------------
    def serial(self) -> contextlib.AbstractContextManager[Any]:
        """Held around reads of an in-process chain (a read while another thread mines sees
        half a block); a no-op for a JSON-RPC node, which serialises requests itself."""
        return self._lock if self._serial_reads else contextlib.nullcontext()

    @property
    def address(self) -> str:
        return str(self.account.address)

    @property
    def chain_id(self) -> int:
        with self.serial():
            return int(self._retry(lambda: self.w3.eth.chain_id, "chain id"))

    def _retry(self, function: Callable[[], T], what: str) -> T:
        delay = self.backoff
        for attempt in range(1, self.retries + 1):
            try:
                return function()
            except TRANSIENT as err:
                if attempt == self.retries:
                    raise ChainError(f"{what} failed after {attempt} attempts: {err}") from err
                logger.warning("%s failed (%s); retrying in %.2f s", what, err, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _next_nonce(self) -> int:
        if self._nonce is None:
            self._nonce = int(
                self._retry(lambda: self.w3.eth.get_transaction_count(self.account.address, "pending"), "nonce")
            )
        nonce = self._nonce
        self._nonce += 1
        return nonce

    def contract(self, name: str, address: str) -> Contract:
        artifact = load_artifact(name)
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact["abi"])

    # -- transactions ----------------------------------------------------------------------
    def send(self, function: Any, *, gas: int | None = None, value: int = 0) -> TxResult:
        """Estimate, sign, send and confirm a contract function call (or constructor)."""
        with self._lock:
            params: dict[str, Any] = {"from": self.account.address, "value": value}
            try:
                estimate = gas or int(self._retry(lambda: function.estimate_gas(params), "gas estimation"))
            except ChainError:
                raise
            except Exception as err:
                reason = revert_reason(err)
                if reason is not None:
                    raise ChainError("transaction would revert", reason) from err
                raise ChainError(f"gas estimation failed: {err}") from err
            for attempt in range(4):  # another process sending with the same key moves the nonce
                params.update({"nonce": self._next_nonce(), "gas": int(estimate * 1.2) + 10_000})
                tx = function.build_transaction(params)
                if tx.get("to") in (b"", ""):
                    tx.pop("to")
                raw = self.account.sign_transaction(tx).raw_transaction
                try:
                    tx_hash = self._retry(functools.partial(self.w3.eth.send_raw_transaction, raw), "send")
                    break
                except Exception as err:
                    text = str(err).lower()
                    if "nonce" in text and attempt < 3:
                        logger.warning("nonce out of sync (%s); resynchronising", err)
                        self._nonce = None
                        continue
                    reason = revert_reason(err)
                    if reason is not None:
                        raise ChainError("transaction reverted", reason) from err
                    raise ChainError(f"sending the transaction failed: {err}") from err
        return self.wait(tx_hash.hex() if isinstance(tx_hash, bytes) else str(tx_hash))

    def fund(self, to: str, wei: int) -> TxResult:
        """Send ``wei`` from the operator to ``to`` (gas for a contributor's claim)."""
        with self._lock:
            tx: dict[str, Any] = {
                "to": Web3.to_checksum_address(to),
                "value": wei,
                "gas": 21_000,
                "gasPrice": int(self.w3.eth.gas_price * 2),
                "nonce": self._next_nonce(),
                "chainId": self.chain_id,
            }
            raw = self.account.sign_transaction(tx).raw_transaction
            tx_hash = self._retry(functools.partial(self.w3.eth.send_raw_transaction, raw), "send")
        return self.wait(tx_hash.hex() if isinstance(tx_hash, bytes) else str(tx_hash))

    def wait(self, tx_hash: str) -> TxResult:
        """Wait for a receipt and the configured confirmations."""
        with self.serial():
            return self._wait(tx_hash)

    def _wait(self, tx_hash: str) -> TxResult:
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(HexStr(tx_hash), timeout=self.timeout, poll_latency=0.05)
        except TimeExhausted as err:
            raise ChainError(f"no receipt for {tx_hash} after {self.timeout:g} s") from err
        deadline = time.monotonic() + self.timeout
        while self.w3.eth.block_number - receipt["blockNumber"] + 1 < self.confirmations:
            if time.monotonic() > deadline:
                raise ChainError(f"{tx_hash} did not reach {self.confirmations} confirmations")
            time.sleep(0.1)
        result = TxResult(
            tx_hash=receipt["transactionHash"].to_0x_hex()
            if hasattr(receipt["transactionHash"], "to_0x_hex")
            else str(tx_hash),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            status=int(receipt["status"]),
            contract_address=receipt.get("contractAddress"),
        )
        if result.status != 1:
            raise ChainError(f"transaction {result.tx_hash} reverted in block {result.block_number}")
        return result

    def receipt(self, tx_hash: str) -> TxResult | None:
        """A transaction's receipt, or None if the chain does not know it."""
        try:
            with self.serial():
                receipt = self.w3.eth.get_transaction_receipt(HexStr(tx_hash))
        except TransactionNotFound:
            return None
        return TxResult(tx_hash, int(receipt["blockNumber"]), int(receipt["gasUsed"]), int(receipt["status"]))

    def call(self, function: Any) -> Any:
        """A read-only call (revert reasons become ``ChainError``)."""
        try:
            with self.serial():
                return self._retry(lambda: function.call({"from": self.account.address}), "call")
        except ChainError:
            raise
        except Exception as err:
            raise ChainError("call failed", revert_reason(err) or str(err)) from err

    def deploy(self, name: str, *args: Any) -> tuple[Contract, TxResult]:
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        result = self.send(factory.constructor(*args))
        if not result.contract_address:
            raise ChainError(f"deploying {name} returned no contract address")
        return self.contract(name, result.contract_address), result


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where the contracts live on one chain."""

    chain_id: int
    registry: str
    devices: str
    token: str
    distributor: str

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Deployment:
        return cls(**json.loads(path.read_text()))


def deploy_contracts(client: ChainClient) -> Deployment:
    """Deploy the four contracts and make the distributor the token's minter."""
    registry, _ = client.deploy("ProvenanceRegistry")
    devices, _ = client.deploy("DeviceRegistry")
    token, _ = client.deploy("RewardToken")
    distributor, _ = client.deploy("RewardDistributor", token.address)
    client.send(token.functions.set_minter(distributor.address, True))
    return Deployment(client.chain_id, registry.address, devices.address, token.address, distributor.address)

"""The exception tree of mindprint.

Every error raised on purpose by mindprint derives from :class:`MindprintError`, so
callers can catch the whole family at one point (the CLI maps them to exit codes, the
API to problem+json). Third-party errors are wrapped with ``raise ... from err``.

::

    MindprintError
    ├── ConfigurationError       bad parameter or setting given by the user
    ├── DeviceError              anything about acquisition hardware
    │   ├── BoardNotFoundError   unknown board name or id
    │   ├── BoardConnectionError the board could not be opened / started (carries exit code)
    │   └── DeviceDisconnectedError  the board stopped delivering and did not come back
    ├── KeyStoreError            device key missing, unreadable or with unsafe permissions
    ├── SessionError             session file cannot be written or parsed
    │   └── SessionFormatError   bytes that are not a mindprint session
    ├── SignalError              DSP input or parameter problems
    ├── ExportError              a dataset cannot be written (output in the way, nothing to export)
    ├── RequestError             the platform refuses a request (the API maps each to a status)
    │   ├── InvalidRequest       malformed or failing input                       (422)
    │   ├── NotAuthenticated     a signature or sign-in does not check out        (401)
    │   ├── NotPermitted         the account may not do this                      (403)
    │   ├── NotFound             no such resource (or not visible to the account) (404)
    │   ├── Conflict             duplicate, replay, state that does not allow it  (409)
    │   ├── TooLarge             a payload over its size limit                    (413)
    │   └── TooManyRequests      over a rate limit; ``retry_after`` seconds       (429)
    └── LedgerError              content addressing, pinning, encryption, chain
        ├── BlockNotFoundError   a CID the store does not hold
        ├── BlockCorruptError    bytes on disk that do not hash to their CID
        ├── CryptoError          a key cannot unwrap or a ciphertext fails authentication
        ├── IPFSError            the IPFS node refused, timed out or is down
        └── ChainError           a transaction reverted or the node is unreachable
"""

from __future__ import annotations


class MindprintError(Exception):
    """Root of all errors raised by mindprint on purpose."""


class ConfigurationError(MindprintError, ValueError):
    """A parameter or setting has a value mindprint cannot use."""


class DeviceError(MindprintError):
    """Acquisition hardware (or its simulation) misbehaved."""


class BoardNotFoundError(DeviceError, LookupError):
    """No BrainFlow board matches the requested name or id."""


class BoardConnectionError(DeviceError):
    """A board could not be prepared or started.

    Parameters
    ----------
    message : str
        What went wrong, in words.
    exit_code : int | None
        BrainFlow's exit code (see ``brainflow.exit_codes.BrainFlowExitCodes``), if any.
    """

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message if exit_code is None else f"{message} (BrainFlow exit code {exit_code})")
        self.exit_code = exit_code


class DeviceDisconnectedError(DeviceError):
    """The board stopped delivering data and reconnecting did not bring it back."""


class KeyStoreError(MindprintError):
    """The device key is missing, unreadable, or stored with unsafe permissions."""


class SessionError(MindprintError):
    """A session directory cannot be written or read."""


class SessionFormatError(SessionError):
    """Bytes that do not form a mindprint session."""


class SignalError(MindprintError, ValueError):
    """Bad input to the signal pipeline (shape, NaN, parameters)."""


class LedgerError(MindprintError):
    """Content addressing, IPFS pinning or chain anchoring failed."""


class BlockNotFoundError(LedgerError, KeyError):
    """The blockstore (or IPFS node) holds no block with this CID."""


class BlockCorruptError(LedgerError):
    """Stored bytes no longer hash to the CID they are filed under."""


class CryptoError(LedgerError):
    """Decryption or key unwrapping failed (wrong key, tampered ciphertext, erased key)."""


class IPFSError(LedgerError):
    """The IPFS node could not be reached or refused the request."""


class ChainError(LedgerError):
    """A chain call failed; ``reason`` holds the revert reason when there is one."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message if reason is None else f"{message}: {reason}")
        self.reason = reason


class ExportError(MindprintError):
    """A researcher export cannot be written (output in the way, nothing qualifies)."""


class RequestError(MindprintError):
    """The platform refuses a request; the subclass says why (the API maps it to a status)."""


class InvalidRequest(RequestError, ValueError):
    """Input that is malformed or does not check out."""


class NotAuthenticated(RequestError):
    """A signature or sign-in that does not verify."""


class NotPermitted(RequestError):
    """The signed-in account may not do this."""


class NotFound(RequestError, LookupError):
    """No such resource, or none the account may see."""


class Conflict(RequestError):
    """A duplicate, a replay, or a state that does not allow the request."""


class TooLarge(RequestError):
    """A payload over its size limit."""


class TooManyRequests(RequestError):
    """Over a rate limit; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

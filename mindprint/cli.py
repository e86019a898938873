"""The mindprint companion CLI: a thin Typer + Rich layer over the Python API.

Library errors (``MindprintError``) become one-line messages and exit codes here, and
only here:

====  =====================================================
 0    success
 1    any other mindprint error (platform refusal, ledger, export)
 2    bad usage or configuration (unknown board, malformed key, bad marker)
 3    device error (board missing, disconnected)
 4    session or key store error
 5    verification failed (the data is not what it claims)
====  =====================================================
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import wraps
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mindprint import __version__
from mindprint.core.errors import (
    BoardNotFoundError,
    ConfigurationError,
    DeviceError,
    KeyStoreError,
    MindprintError,
    SessionError,
)
from mindprint.core.logging import configure_logging
from mindprint.core.settings import Settings, load_settings

app = typer.Typer(
    name="mindprint",
    help="Collect EEG-bound human data from BrainFlow boards and prove it is real.",
    no_args_is_help=True,
    add_completion=False,
)
device_app = typer.Typer(help="The device key and recordings to replay.", no_args_is_help=True)
session_app = typer.Typer(help="Verify, inspect and export recorded sessions.", no_args_is_help=True)
app.add_typer(device_app, name="device")
app.add_typer(session_app, name="session")

# a pipe or a file is not 80 columns wide: messages never wrap, tables get room
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, soft_wrap=True)
logger = logging.getLogger(__name__)

EXIT_CODES: list[tuple[type[MindprintError], int]] = [
    (ConfigurationError, 2),
    (BoardNotFoundError, 2),  # an unknown board name is bad usage, not a device fault
    (DeviceError, 3),
    (KeyStoreError, 4),
    (SessionError, 4),
    (MindprintError, 1),
]
VERIFICATION_FAILED = 5

F = TypeVar("F", bound=Callable[..., Any])


def _handle_errors(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MindprintError as err:
            code = next(code for kind, code in EXIT_CODES if isinstance(err, kind))
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
            raise typer.Exit(code) from err

    return wrapper  # type: ignore[return-value]


def _settings() -> Settings:
    return load_settings()


def _print_version(value: bool) -> None:
    if value:
        console.print(f"mindprint {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-v info, -vv debug).")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """mindprint companion CLI."""
    configure_logging(verbose)


# ---------------------------------------------------------------------------- devices
@app.command()
@_handle_errors
def devices(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every board BrainFlow supports, read from BrainFlow's own board descriptions."""
    from mindprint.device.boards import list_boards

    boards = list_boards()
    if as_json:
        rows = [
            {
                "name": b.short_name,
                "id": b.board_id,
                "brainflow_name": b.name,
                "eeg_channels": len(b.eeg_channels),
                "sampling_rate": b.sampling_rate,
                "required": list(b.required),
                "optional": list(b.optional),
            }
            for b in boards
        ]
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"BrainFlow boards ({len(boards)})")
    for column in ("name", "id", "BrainFlow name", "EEG ch", "rate (Hz)", "needs", "optional"):
        table.add_column(column, justify="right" if column in {"id", "EEG ch", "rate (Hz)"} else "left")
    for b in boards:
        table.add_row(
            b.short_name,
            str(b.board_id),
            b.name,
            str(len(b.eeg_channels)) if b.eeg_channels else "-",
            f"{b.sampling_rate:g}" if b.sampling_rate else "-",
            " ".join(f"--{p.replace('_', '-')}" for p in b.required) or "-",
            " ".join(f"--{p.replace('_', '-')}" for p in b.optional) or "-",
        )
    console.print(table)


# ------------------------------------------------------------------------- device key
KeyFileOption = Annotated[
    Path | None,
    typer.Option("--key-file", help="Device key file (default: $MINDPRINT_HOME/device_key.pem)."),
]


@device_app.command("init")
@_handle_errors
def device_init(key_file: KeyFileOption = None) -> None:
    """Create this device's Ed25519 key (mode 0600). Never overwrites an existing key."""
    from mindprint.device.keys import DeviceKey

    path = key_file or _settings().device_key_path
    key = DeviceKey.generate()
    key.save(path)
    console.print(f"device key created at {path}")
    console.print(f"device id (public key): [bold]{key.device_id}[/]")


@device_app.command("show")
@_handle_errors
def device_show(key_file: KeyFileOption = None) -> None:
    """Print this device's public key (its identity)."""
    from mindprint.device.keys import DeviceKey

    path = key_file or _settings().device_key_path
    console.print(DeviceKey.load(path).device_id)


@device_app.command("import")
@_handle_errors
def device_import(
    source: Annotated[Path, typer.Argument(help="OpenBCI GUI raw CSV (.txt/.csv, .gz ok) or BrainFlow CSV.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="BrainFlow CSV to write, for --board playback --file.")],
    board: Annotated[
        str | None, typer.Option(help="Board that recorded a BrainFlow CSV (omit for OpenBCI GUI files).")
    ] = None,
    start: Annotated[float, typer.Option(help="Excerpt start, seconds.")] = 0.0,
    seconds: Annotated[float | None, typer.Option(help="Excerpt length, seconds (default: all).")] = None,
) -> None:
    """Convert a recording into a file BrainFlow's playback board replays."""
    from mindprint.device.boards import board_info, resolve_board
    from mindprint.device.openbci import import_recording

    board_id = resolve_board(board).board_id if board else None
    recording = import_recording(source, out, board=board_id, start_seconds=start, seconds=seconds)
    info = board_info(recording.board_id)
    console.print(
        f"wrote {out}: {info.short_name} layout, {recording.data.shape[1]} samples at {recording.sampling_rate:g} Hz; "
        f"replay with [bold]--board playback --master-board {info.short_name} --file {out}[/]"
    )


# ----------------------------------------------------------------------------- record
def _board_source(
    board: str,
    serial_port: str | None,
    mac_address: str | None,
    ip_address: str | None,
    ip_port: int | None,
    serial_number: str | None,
    other_info: str | None,
    timeout: int | None,
    file: Path | None,
    master_board: str | None,
) -> Any:
    from mindprint.device.boards import BoardSpec
    from mindprint.device.bridge import BrainFlowSource

    if board.lower() in {"playback", "playback_file"} and master_board is None and file is not None:
        master_board = "cyton"
    spec = BoardSpec.create(
        board,
        serial_port=serial_port,
        mac_address=mac_address,
        ip_address=ip_address,
        ip_port=ip_port,
        serial_number=serial_number,
        other_info=other_info,
        timeout=timeout,
        file=str(file) if file else None,
        master_board=master_board,
    )
    return BrainFlowSource(spec)


BoardOption = Annotated[str, typer.Option("--board", "-b", help="Board name or id (see `mindprint devices`).")]
SerialOption = Annotated[str | None, typer.Option(help="Serial port, e.g. /dev/ttyUSB0.")]
MacOption = Annotated[str | None, typer.Option(help="Bluetooth MAC address.")]
IpOption = Annotated[str | None, typer.Option(help="IP address of a WiFi board.")]
PortOption = Annotated[int | None, typer.Option(help="IP port of a WiFi board.")]
SerialNumberOption = Annotated[str | None, typer.Option(help="Device serial number.")]
OtherOption = Annotated[str | None, typer.Option(help="BrainFlow other_info parameter.")]
TimeoutOption = Annotated[int | None, typer.Option(help="Discovery timeout, seconds.")]
FileOption = Annotated[Path | None, typer.Option(help="BrainFlow CSV to replay (playback board).")]
MasterOption = Annotated[str | None, typer.Option(help="Board that recorded the playback file (default cyton).")]


def _levels_table(chunk_samples: np.ndarray, names: tuple[str, ...], units: tuple[str, ...]) -> Table:
    table = Table(title="per-channel level (last chunk)", expand=False)
    table.add_column("channel")
    table.add_column("RMS", justify="right")
    table.add_column("peak-to-peak", justify="right")
    centered = chunk_samples - chunk_samples.mean(axis=1, keepdims=True)
    rms = np.sqrt(np.mean(centered**2, axis=1))
    ptp = np.ptp(chunk_samples, axis=1)
    for name, unit, r, p in zip(names, units, rms, ptp, strict=True):
        scale, shown = (1e6, "µV") if unit == "V" else (1.0, unit)
        table.add_row(name, f"{r * scale:,.1f} {shown}", f"{p * scale:,.1f} {shown}")
    return table


def _record(
    source: Any,
    out: Path,
    key_path: Path,
    duration: float,
    chunk_seconds: float,
    markers: list[tuple[float, str]],
    resume: bool = False,
) -> Any:
    from mindprint.device.keys import DeviceKey
    from mindprint.device.recorder import record_session

    key = DeviceKey.load(key_path)
    progress = Progress(
        TextColumn("[bold]recording[/]"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.0f} s"),
        TextColumn("{task.fields[chunks]} chunks"),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("record", total=duration, chunks=0)
    live = Live(progress, console=console, refresh_per_second=8, transient=False)
    seconds_done = 0.0

    def on_start(acquisition: Any) -> None:
        if not markers:
            return
        started = time.monotonic()

        def insert() -> None:
            for at, label in sorted(markers):
                delay = at - (time.monotonic() - started)
                if delay > 0:
                    time.sleep(delay)
                if acquisition.ended:
                    return
                acquisition.insert_marker(label)

        threading.Thread(target=insert, daemon=True, name="mindprint-markers").start()

    def on_chunk(seq: int, cid: Any, chunk: Any, acquisition: Any) -> None:
        nonlocal seconds_done
        seconds_done += chunk.samples.shape[1] / acquisition.sfreq
        progress.update(task, completed=min(seconds_done, duration), chunks=seq + 1)
        layout = acquisition.layout
        live.update(Group(progress, _levels_table(chunk.samples, layout.names, layout.units)))

    with live:
        summary = record_session(
            source,
            out,
            key,
            duration=duration,
            chunk_seconds=chunk_seconds,
            on_chunk=on_chunk,
            on_start=on_start,
            resume=resume,
        )
    console.print()
    return summary


def _parse_markers(values: list[str], duration: float | None = None) -> list[tuple[float, str]]:
    """``SECONDS:LABEL`` values; a time outside the recording is refused, not dropped."""
    markers = []
    for value in values:
        at, sep, label = value.partition(":")
        try:
            seconds = float(at)
        except ValueError as err:
            raise ConfigurationError(f"--marker must be SECONDS:LABEL, got {value!r}") from err
        if not seconds >= 0 or (duration is not None and seconds >= duration):
            raise ConfigurationError(
                f"--marker {value!r}: the time must be within the recording (0 ≤ seconds < {duration:g})"
                if duration is not None
                else f"--marker {value!r}: the time must be 0 or more seconds"
            )
        markers.append((seconds, label if sep else "marker"))
    return markers


@app.command()
@_handle_errors
def record(
    out: Annotated[Path, typer.Option("--out", "-o", help="New session directory.")],
    board: BoardOption = "synthetic",
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds to record.")] = 30.0,
    chunk_seconds: Annotated[float, typer.Option(min=0.05, max=60, help="Chunk duration, seconds.")] = 1.0,
    marker: Annotated[list[str] | None, typer.Option(help="Insert a marker: SECONDS:LABEL (repeatable).")] = None,
    resume: Annotated[bool, typer.Option(help="Append to the existing session in --out (e.g. after a crash).")] = False,
    key_file: KeyFileOption = None,
    serial_port: SerialOption = None,
    mac_address: MacOption = None,
    ip_address: IpOption = None,
    ip_port: PortOption = None,
    serial_number: SerialNumberOption = None,
    other_info: OtherOption = None,
    timeout: TimeoutOption = None,
    file: FileOption = None,
    master_board: MasterOption = None,
) -> None:
    """Record a signed, hash-chained session from a board (progress and levels shown live)."""
    markers = _parse_markers(marker or [], duration)
    from mindprint.device.session import SESSION_FILE

    if not resume and (out / SESSION_FILE).exists():  # refuse before opening the board
        raise SessionError(f"{out / SESSION_FILE} already exists; use a new directory or --resume")
    source = _board_source(
        board, serial_port, mac_address, ip_address, ip_port, serial_number, other_info, timeout, file, master_board
    )
    key_path = key_file or _settings().device_key_path
    summary = _record(source, out, key_path, duration, chunk_seconds, markers, resume)
    console.print(
        f"session {summary.session}: {summary.chunks} chunks, {summary.samples} samples "
        f"({summary.seconds:.1f} s), gaps {summary.gaps}, ended: {summary.ended}"
    )
    console.print(f"written to {out}; check it with [bold]mindprint session verify {out}[/]")


# ------------------------------------------------------------------------------ check
def _check_table(status: Any, names: list[str], line_freq: float | None, seconds: float) -> Table:
    title = f"signal check · {seconds:5.1f} s · mains {f'{line_freq:g} Hz' if line_freq else 'none detected'}"
    table = Table(title=title)
    table.add_column("channel")
    table.add_column("quality", justify="right")
    for band in status.bands:
        table.add_column(f"{band} %", justify="right")
    table.add_column("reasons")
    for i, name in enumerate(names):
        q = float(status.quality.index[i])
        colour = "green" if q >= 0.8 else "yellow" if q >= 0.5 else "red"
        cells = [f"{100 * v:5.1f}" for v in status.relative_power[i]]
        reasons = ", ".join(status.quality.reasons[i]) or "-"
        table.add_row(name, f"[{colour}]{q:.2f}[/]", *cells, escape(reasons))
    return table


# a 2-channel device whose channels covary less than this (the median ``correlation_z``;
# independent channels sit near 1) has 40–75 % of its real epochs accepted by liveness, ≥ 2
# about 99 % (benchmarks/two_channels.py, models held out; docs/figures/two_channel_pairs.png)
WEAK_PAIR_Z = 2.0


def liveness_preview(model: Any, data: np.ndarray, sfreq: float) -> str:
    """One line for ``mindprint check``: the liveness of the last 4 s of ``data`` (volts),
    scored exactly as the platform scores a sample's epoch, and for a 2-channel device a
    hint when its two channels share too little activity for liveness to accept them."""
    from mindprint.core.errors import SignalError
    from mindprint.labeling.verification.model import EPOCH_SECONDS

    needed = int(round(EPOCH_SECONDS * sfreq))
    if data.shape[1] < needed:
        return f"liveness: waiting for {EPOCH_SECONDS:g} s of data (have {data.shape[1] / sfreq:.1f} s)"
    epoch = data[:, -needed:]
    try:
        live = model.assess(epoch, sfreq)
    except SignalError as err:
        return f"liveness: [red]cannot score the last {EPOCH_SECONDS:g} s[/]: {escape(str(err))}"
    if live.accepted:
        line = f"liveness of the last {EPOCH_SECONDS:g} s: {live.score:.2f} → [green]a sample would be accepted[/]"
    else:
        why = escape(live.reasons[0]) if live.reasons else "below the threshold"
        line = f"liveness of the last {EPOCH_SECONDS:g} s: {live.score:.2f} → [red]a sample would be rejected[/]: {why}"
    if epoch.shape[0] == 2:
        z = float(np.median(live.correlation_z))
        if z < WEAK_PAIR_Z:
            line += (
                f"\n[yellow]your two channels share little activity[/] (correlation z {z:.1f}; independent channels "
                "≈ 1): liveness accepts 40–75 % of such pairs' samples against ~99 % for pairs above 2 — place "
                "both electrodes over one region, on the same reference"
            )
    return line


@app.command()
@_handle_errors
def check(
    board: BoardOption = "synthetic",
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")] = None,
    line_freq: Annotated[str, typer.Option(help="Mains frequency: auto, 50, 60 or none.")] = "auto",
    refresh: Annotated[float, typer.Option(min=4.0, max=30.0, help="Screen refreshes per second.")] = 4.0,
    serial_port: SerialOption = None,
    mac_address: MacOption = None,
    ip_address: IpOption = None,
    ip_port: PortOption = None,
    serial_number: SerialNumberOption = None,
    other_info: OtherOption = None,
    timeout: TimeoutOption = None,
    file: FileOption = None,
    master_board: MasterOption = None,
) -> None:
    """Live per-channel quality and band powers in the terminal, until Ctrl-C; every second,
    the liveness of the last 4 s as the platform would score a sample of it."""
    from mindprint.device.bridge import Acquisition
    from mindprint.labeling.verification.model import EPOCH_SECONDS, load_default_model
    from mindprint.signal.filters import detect_line_frequency
    from mindprint.signal.pipeline import StreamingPipeline

    if line_freq not in {"auto", "50", "60", "none"}:
        raise ConfigurationError(f"--line-freq must be auto, 50, 60 or none, got {line_freq!r}")
    source = _board_source(
        board, serial_port, mac_address, ip_address, ip_port, serial_number, other_info, timeout, file, master_board
    )
    acquisition = Acquisition(source)
    eeg = [i for i, kind in enumerate(acquisition.layout.types) if kind == "eeg"]
    names = [acquisition.layout.names[i] for i in eeg]
    sfreq = acquisition.sfreq
    pipeline: StreamingPipeline | None = None
    collected: list[np.ndarray] = []
    model = load_default_model()
    recent = np.empty((len(eeg), 0))  # the last EPOCH_SECONDS of EEG, for the liveness line
    keep = int(round(EPOCH_SECONDS * sfreq))
    preview, scored = liveness_preview(model, recent, sfreq), 0.0
    cursor = 0
    started = printed = time.monotonic()
    try:
        with acquisition, Live(console=console, refresh_per_second=refresh, transient=False) as live:
            waiting = f"waiting for {2:g} s of data to detect mains and fill a window…"
            if console.is_terminal:
                live.update(waiting)
            else:  # a pipe or a log: Live prints what it shows last when it stops; show nothing
                console.print(waiting)
            while seconds is None or time.monotonic() - started < seconds:
                read = acquisition.buffer.read_since(cursor)
                cursor = read.end
                chunk = read.data[eeg]
                recent = np.concatenate([recent, chunk], axis=1)[:, -keep:]
                if time.monotonic() - scored >= 1.0:  # ~5 ms a score: once a second
                    preview, scored = liveness_preview(model, recent, sfreq), time.monotonic()
                if pipeline is None:
                    collected.append(chunk)
                    buffered = np.concatenate(collected, axis=1)
                    if buffered.shape[1] >= 2 * sfreq:
                        mains = (
                            detect_line_frequency(buffered, sfreq)
                            if line_freq == "auto"
                            else None
                            if line_freq == "none"
                            else float(line_freq)
                        )
                        pipeline = StreamingPipeline(sfreq, names, line_freq=mains)
                        pipeline.process(buffered)
                elif chunk.shape[1]:
                    pipeline.process(chunk)
                status = pipeline.status() if pipeline is not None else None
                if status is not None and pipeline is not None:
                    table = _check_table(status, names, pipeline.line_freq, time.monotonic() - started)
                    shown = Group(table, preview)
                    if console.is_terminal:
                        live.update(shown)
                    elif time.monotonic() - printed >= 1.0:  # a pipe or a log: one table a second
                        console.print(shown)
                        printed = time.monotonic()
                if acquisition.ended:
                    console.print(f"stream ended: {acquisition.ended}")
                    break
                time.sleep(1.0 / refresh)
    except KeyboardInterrupt:
        console.print("stopped")


# ---------------------------------------------------------------------------- session
def _print_report(report: Any) -> None:
    table = Table(show_header=False, title=f"session {report.session or '?'}")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for name, value in (
        ("result", "[green]VALID[/]" if report.ok else f"[red]INVALID ({len(report.issues)} issues)[/]"),
        ("device", report.device),
        ("board", f"{report.board} @ {report.sfreq:g} Hz" if report.sfreq else report.board),
        ("chunks", str(report.chunks)),
        ("samples", f"{report.samples} ({report.duration_seconds:.2f} s on the device clock)"),
        ("markers", str(report.markers)),
        (
            "gaps",
            "; ".join(f"before seq {g['seq']}: {g['missing_seconds']:.2f} s ({g['reason']})" for g in report.gaps)
            or "none",
        ),
        ("first chunk CID", report.first_cid),
        ("last chunk CID", report.last_cid),
    ):
        table.add_row(name, str(value))
    console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    for issue in report.issues:
        console.print(f"[red]✗[/] {escape(str(issue))}", highlight=False)


@session_app.command("verify")
@_handle_errors
def session_verify(
    path: Annotated[Path, typer.Argument(help="Session directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
) -> None:
    """Check signatures, chain continuity, sequence numbers and sample timing of a session."""
    from mindprint.device.session import verify_session

    report = verify_session(path)
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(VERIFICATION_FAILED)


@session_app.command("export")
@_handle_errors
def session_export(
    path: Annotated[Path, typer.Argument(help="Session directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.fif or .edf).")],
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="fif or edf (default: from --out).")] = None,
) -> None:
    """Write a session as an MNE-readable FIF or EDF file with markers as annotations."""
    from mindprint.export.session_file import export_session

    written = export_session(path, out, fmt)
    console.print(f"wrote {written}")


# ------------------------------------------------------------------------- chain / rewards
chain_app = typer.Typer(help="Contracts on an EVM chain (JSON-RPC).", no_args_is_help=True)
platform_app = typer.Typer(help="Operators: set up a platform.", no_args_is_help=True)
app.add_typer(platform_app, name="platform")


@platform_app.command("init")
@_handle_errors
def platform_init(
    secrets_file: Annotated[
        Path | None,
        typer.Option(help="Where to write the secrets (default: $MINDPRINT_HOME/platform-secrets.json)."),
    ] = None,
) -> None:
    """Create the platform's shared secrets once: token key, platform X25519 key, pseudonym key.

    Every API process and worker of the platform reads them (MINDPRINT_SECRETS_FILE), so a
    token issued by one is accepted by all and a restart signs nobody out. Never overwrites.
    """
    from mindprint.platform.secrets import PlatformSecrets

    path = secrets_file or _settings().home / "platform-secrets.json"
    created = PlatformSecrets.generate()
    created.save(path)
    from mindprint.ledger.crypto import RecipientKey

    public = RecipientKey.from_private_bytes(created.platform_key).public_key.hex()
    console.print(f"platform secrets written to {path} (mode 0600); platform public key {public}")
    console.print(f"give every API process and worker: [bold]MINDPRINT_SECRETS_FILE={path}[/]")


rewards_app = typer.Typer(help="Contributor rewards.", no_args_is_help=True)
app.add_typer(chain_app, name="chain")
app.add_typer(rewards_app, name="rewards")

RpcOption = Annotated[str, typer.Option("--rpc-url", help="JSON-RPC URL of the chain, e.g. http://127.0.0.1:8545.")]


def _private_key(path: Path | None, variable: str) -> str:
    """A secp256k1 private key (0x + 64 hex digits) from a file or the environment, checked."""
    import os
    import re

    if path is not None:
        try:
            value = path.read_text().strip()
        except OSError as err:
            raise ConfigurationError(f"cannot read key file {path}: {err}") from err
        where = f"key file {path}"
    else:
        value = os.environ.get(variable, "").strip()
        if not value:
            raise ConfigurationError(f"give a key file or set {variable}")
        where = f"${variable}"
    if not re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", value):
        raise ConfigurationError(f"{where} is not a private key (expected 64 hex digits, optionally 0x-prefixed)")
    return value if value.startswith("0x") else "0x" + value


@chain_app.command("deploy")
@_handle_errors
def chain_deploy(
    rpc_url: RpcOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the deployment (JSON).")],
    key_file: Annotated[
        Path | None, typer.Option(help="Operator private key file (else $MINDPRINT_OPERATOR_KEY).")
    ] = None,
) -> None:
    """Deploy the registry, device registry, reward token and distributor."""
    from mindprint.ledger.chain import ChainClient, deploy_contracts

    client = ChainClient.connect(rpc_url, _private_key(key_file, "MINDPRINT_OPERATOR_KEY"))
    deployment = deploy_contracts(client)
    deployment.save(out)
    console.print_json(out.read_text())


@rewards_app.command("claim")
@_handle_errors
def rewards_claim(
    claim_file: Annotated[
        Path, typer.Argument(help="Claim JSON from the platform (epoch, account, amount, proof, root).")
    ],
    rpc_url: RpcOption,
    distributor: Annotated[str, typer.Option(help="RewardDistributor address.")],
    wallet_key_file: Annotated[
        Path | None, typer.Option(help="Wallet private key file (else $MINDPRINT_WALLET_KEY).")
    ] = None,
) -> None:
    """Claim an epoch's reward with its Merkle proof (checked offline first)."""
    from mindprint.ledger.chain import ChainClient
    from mindprint.ledger.rewards import Claim, claim_reward

    claim = Claim.load(claim_file)
    client = ChainClient.connect(rpc_url, _private_key(wallet_key_file, "MINDPRINT_WALLET_KEY"))
    result = claim_reward(client, distributor, claim)
    console.print(
        f"claimed {claim.amount} for {claim.account} (epoch {claim.epoch}) "
        f"in {result.tx_hash}, block {result.block_number}"
    )


# ----------------------------------------------------------------------- serve / label
IpfsOption = Annotated[
    str | None,
    typer.Option(help="Kubo RPC API to pin accepted samples to, e.g. http://127.0.0.1:5001 ($MINDPRINT_IPFS_URL)."),
]


DeploymentOption = Annotated[
    Path | None,
    typer.Option(
        help="The contracts on --rpc-url (`mindprint chain deploy --out`); default: the data directory's, "
        "else $MINDPRINT_DEPLOYMENT_FILE."
    ),
]


def _with_chain_files(settings: Any, ipfs_url: str | None, deployment: Path | None) -> Any:
    """Settings with the command line's --ipfs-url and --deployment over the environment's."""
    update: dict[str, Any] = {}
    if ipfs_url:
        update["ipfs_url"] = ipfs_url
    if deployment is not None:
        update["deployment_file"] = deployment
    return settings.model_copy(update=update) if update else settings


@app.command()
@_handle_errors
def serve(
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind: loopback by default; behind a load balancer the machine's "
            "(or container's) private address."
        ),
    ] = "127.0.0.1",
    rpc_url: Annotated[str | None, typer.Option(help="JSON-RPC chain (default: an embedded in-process EVM).")] = None,
    key_file: Annotated[
        Path | None, typer.Option(help="Operator key file for --rpc-url (else $MINDPRINT_OPERATOR_KEY).")
    ] = None,
    ipfs_url: IpfsOption = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="API processes (one per core); more than 1 needs --rpc-url.")
    ] = 1,
    run_worker: Annotated[
        bool,
        typer.Option("--worker/--no-worker", help="Run the pinning/anchoring worker here (else: `mindprint worker`)."),
    ] = True,
    deployment: DeploymentOption = None,
    deploy: Annotated[
        bool, typer.Option("--deploy", help="With --rpc-url: deploy the contracts if no deployment names them.")
    ] = False,
) -> None:
    """Run the labeling API with its pinning and anchoring worker (on loopback unless --host says otherwise)."""
    import os

    import uvicorn

    from mindprint.api.server import start_platform
    from mindprint.api.settings import get_settings

    if workers > 1 and not rpc_url:
        raise typer.BadParameter(
            "the embedded chain lives inside one process: run --workers N with --rpc-url (a chain every "
            "process shares, e.g. anvil)",
            param_hint="--workers",
        )
    operator_key = _private_key(key_file, "MINDPRINT_OPERATOR_KEY") if rpc_url else None
    settings = _with_chain_files(get_settings(), ipfs_url, deployment)
    console.print("starting the platform: database migrations, contracts…")
    with console.status("starting…"):
        # with several API processes this one deploys, migrates and runs the worker; they serve
        running = start_platform(
            settings,
            rpc_url=rpc_url,
            operator_key=operator_key,
            worker=run_worker,
            deploy=deploy,
        )
    console.print(
        f"chain {running.chain.chain_id} · registry {running.deployment.registry} · data {settings.platform_dir}"
        + (f" · pinning to {settings.ipfs_url}" if settings.ipfs_url else "")
        + ("" if run_worker else " · no worker here (run `mindprint worker`)")
    )
    console.print(
        f"API on http://{host}:{port} (OpenAPI at /docs)"
        + (f" · {workers} processes" if workers > 1 else "")
        + "; Ctrl-C to stop"
    )
    try:
        if workers == 1:
            uvicorn.run(running.app, host=host, port=port, log_level="info")
        else:
            # the API processes read their settings from the environment (spawned, not forked)
            os.environ.update(
                {
                    "MINDPRINT_RPC_URL": str(rpc_url),
                    "MINDPRINT_OPERATOR_KEY": str(operator_key),
                    "MINDPRINT_DATABASE_URL": settings.database_url,
                    "MINDPRINT_DATA_DIR": str(settings.platform_dir),
                    **({"MINDPRINT_IPFS_URL": settings.ipfs_url} if settings.ipfs_url else {}),
                }
            )
            from mindprint.api.processes import serve_processes

            serve_processes(workers, host, port)  # a socket per process: connections spread evenly
    finally:
        running.close()


@app.command()
@_handle_errors
def worker(
    rpc_url: Annotated[str, typer.Option(help="JSON-RPC chain shared with `mindprint serve --rpc-url`.")],
    key_file: Annotated[Path | None, typer.Option(help="Operator key file (else $MINDPRINT_OPERATOR_KEY).")] = None,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between polls of the job queue.")] = 1.0,
    once: Annotated[bool, typer.Option(help="Process what is queued, then exit.")] = False,
    ipfs_url: IpfsOption = None,
    deployment: DeploymentOption = None,
) -> None:
    """A separate pinning/anchoring worker on the platform's database (scale out with several)."""
    from mindprint.api.server import make_worker
    from mindprint.api.settings import get_settings
    from mindprint.platform.service import connect_chain, platform_for

    settings = _with_chain_files(get_settings().model_copy(update={"rpc_url": rpc_url}), ipfs_url, deployment)
    platform = connect_chain(
        platform_for(settings), settings, operator_key=_private_key(key_file, "MINDPRINT_OPERATOR_KEY")
    )
    assert platform.chain is not None and platform.engine is not None
    chain = platform.chain
    runner = make_worker(platform, settings)
    console.print(
        f"worker {runner.name} on {settings.database_url.split('@')[-1]} · chain {chain.chain_id}"
        + (f" · pinning to {settings.ipfs_url}" if settings.ipfs_url else "")
    )
    while True:
        stats = runner.run_once()
        if stats.pinned or stats.anchored or stats.failed:
            console.print(f"pinned {stats.pinned} · anchored {stats.anchored} · failed {stats.failed}")
        if once and not (stats.pinned or stats.anchored or stats.failed):
            return
        time.sleep(interval)


# ---------------------------------------------------------------------------- requesters
project_app = typer.Typer(help="Requesters: create labeling projects and add items.", no_args_is_help=True)
app.add_typer(project_app, name="project")

ApiOption = Annotated[str, typer.Option("--api", help="Platform URL, e.g. http://127.0.0.1:8000.")]
WalletOption = Annotated[Path | None, typer.Option(help="Requester's wallet key file (else $MINDPRINT_WALLET_KEY).")]
ItemsOption = Annotated[
    Path | None,
    typer.Option(help="Items: a CSV with a `text` (or `image_cid`) column and an optional `gold` column, or JSON."),
]


def _read_items(path: Path) -> list[dict[str, Any]]:
    """Items from CSV (columns text or image_cid, optional gold) or JSON (a list of such objects)."""
    import csv

    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text())
            if not isinstance(rows, list):
                raise ConfigurationError(f"{path}: a JSON items file holds a list of objects")
        else:
            with path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
    except (OSError, ValueError, csv.Error) as err:
        raise ConfigurationError(f"cannot read items from {path}: {err}") from err
    items = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not (row.get("text") or row.get("image_cid")):
            raise ConfigurationError(f"{path}: item {n} needs a text or an image_cid")
        content = {"text": row["text"]} if row.get("text") else {"image_cid": row["image_cid"]}
        gold = row.get("gold") or None
        items.append({"content": content, "gold": gold})
    if not items:
        raise ConfigurationError(f"{path} holds no items")
    return items


def _requester(api: str, wallet_key_file: Path | None) -> Any:
    from eth_account import Account

    from mindprint.companion.client import PlatformClient

    client = PlatformClient(api, Account.from_key(_private_key(wallet_key_file, "MINDPRINT_WALLET_KEY")))
    client.sign_in()
    return client


@project_app.command("create")
@_handle_errors
def project_create(
    api: ApiOption,
    name: Annotated[str, typer.Option(help="Project name.")],
    classes: Annotated[str | None, typer.Option(help="Comma-separated answer classes (a classes schema).")] = None,
    rating: Annotated[str | None, typer.Option(help="MIN:MAX for a rating schema, e.g. 1:5.")] = None,
    text: Annotated[bool, typer.Option("--text", help="Free-text answers.")] = False,
    redundancy: Annotated[int, typer.Option(min=1, max=50, help="Contributors per item (k).")] = 3,
    description: Annotated[str, typer.Option(help="Shown to contributors.")] = "",
    challenge_cues: Annotated[
        int,
        typer.Option(
            min=0,
            max=3,
            help="Challenge–response liveness: cues flashed per task at moments the platform draws (0 = off).",
        ),
    ] = 0,
    items: ItemsOption = None,
    wallet_key_file: WalletOption = None,
) -> None:
    """Create a project (signs in with your requester wallet) and optionally add its items."""
    if sum(x is not None and x is not False for x in (classes, rating, text or None)) != 1:
        raise ConfigurationError("give exactly one of --classes, --rating or --text")
    if classes is not None:
        schema: dict[str, Any] = {"kind": "classes", "classes": [c.strip() for c in classes.split(",") if c.strip()]}
    elif rating is not None:
        low, sep, high = rating.partition(":")
        if not sep or not low.strip().lstrip("-").isdigit() or not high.strip().lstrip("-").isdigit():
            raise ConfigurationError(f"--rating must be MIN:MAX, got {rating!r}")
        schema = {"kind": "rating", "rating_min": int(low), "rating_max": int(high)}
    else:
        schema = {"kind": "text"}
    parsed = _read_items(items) if items is not None else []
    client = _requester(api, wallet_key_file)
    project = client.create_project(
        name, schema, redundancy=redundancy, description=description, challenge_cues=challenge_cues
    )
    cued = f", {challenge_cues} challenge cues per task" if challenge_cues else ""
    console.print(f"project [bold]{project['id']}[/] created: {escape(name)} ({schema['kind']}, k={redundancy}{cued})")
    if parsed:
        ids = client.add_items(int(project["id"]), parsed)
        gold = sum(item["gold"] is not None for item in parsed)
        console.print(f"{len(ids)} items added ({gold} gold)")


@project_app.command("items")
@_handle_errors
def project_items(
    api: ApiOption,
    project: Annotated[int, typer.Option(min=1, help="Project id.")],
    items: Annotated[Path, typer.Option(help="CSV (text/image_cid, gold) or JSON items file.")],
    wallet_key_file: WalletOption = None,
) -> None:
    """Add items (and gold items) to one of your projects."""
    parsed = _read_items(items)
    ids = _requester(api, wallet_key_file).add_items(project, parsed)
    console.print(f"{len(ids)} items added to project {project} ({sum(i['gold'] is not None for i in parsed)} gold)")


# ---------------------------------------------------------------------------- researchers
researcher_app = typer.Typer(help="Researcher keys: receive access to exported sessions.", no_args_is_help=True)
app.add_typer(researcher_app, name="researcher")


@researcher_app.command("init")
@_handle_errors
def researcher_init(
    path: Annotated[Path, typer.Argument(help="Where to create the researcher's X25519 key (mode 0600).")],
) -> None:
    """Create a researcher key; give its public key to the platform operator (`mindprint grant`)."""
    from mindprint.core.secret_files import write_secret
    from mindprint.ledger.crypto import RecipientKey

    key = RecipientKey.generate()
    try:
        write_secret(path, key.private_bytes())
    except FileExistsError as err:
        raise ConfigurationError(f"{path} exists; a researcher key is never overwritten") from err
    console.print(f"researcher key {path}\npublic key {key.public_key.hex()}")


def _load_recipient(path: Path) -> Any:
    from mindprint.core.secret_files import read_secret
    from mindprint.ledger.crypto import RecipientKey

    try:
        return RecipientKey.from_private_bytes(read_secret(path, "researcher key"))
    except FileNotFoundError as err:
        raise ConfigurationError(f"no researcher key at {path}") from err


def _export_source(researcher_key: Path | None, chain_id: int | None) -> Any:
    from mindprint.api.settings import get_settings
    from mindprint.export.bids import platform_source
    from mindprint.platform.service import engine_for, platform_for

    settings = get_settings()
    platform = platform_for(settings)
    recipient = _load_recipient(researcher_key) if researcher_key else platform.platform_key
    return platform_source(
        engine_for(settings),
        settings.platform_dir,
        platform.blockstore,
        platform.keys,
        recipient,
        chain_id=chain_id,
        pseudonym_secret=platform.pseudonym_key,
    )


@app.command()
@_handle_errors
def grant(
    public_key: Annotated[
        str, typer.Argument(help="The researcher's public key (hex, from `mindprint researcher init`).")
    ],
    project: Annotated[list[int] | None, typer.Option(help="Only these projects (repeatable); default all.")] = None,
    chain_id: Annotated[int | None, typer.Option(help="Chain of the deployment, if several.")] = None,
) -> None:
    """Operator: wrap the data keys of exportable sessions for a researcher's key."""
    from mindprint.export.bids import grant_sessions

    try:
        researcher = bytes.fromhex(public_key.removeprefix("0x"))
    except ValueError as err:
        raise ConfigurationError("the public key must be hex") from err
    if len(researcher) != 32:
        raise ConfigurationError("the public key must be 32 bytes (X25519)")
    source = _export_source(None, chain_id)
    granted = grant_sessions(source, researcher, projects=project or None)
    console.print(f"granted {granted} session key(s) to {public_key[:16]}…")


@app.command("export")
@_handle_errors
def export_cmd(
    out: Annotated[Path, typer.Argument(help="Directory for the BIDS dataset (must be new or empty).")],
    project: Annotated[list[int] | None, typer.Option(help="Only these projects (repeatable); default all.")] = None,
    researcher_key: Annotated[
        Path | None, typer.Option(help="Decrypt with this researcher key (granted by `mindprint grant`).")
    ] = None,
    chain_id: Annotated[int | None, typer.Option(help="Chain of the deployment, if several.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier mindprint export in OUT.")] = False,
    data_format: Annotated[
        str, typer.Option("--format", help="EDF (16-bit, compact) or BrainVision (float32, lossless).")
    ] = "EDF",
) -> None:
    """Export accepted, consented, anchored samples as BIDS-EEG with provenance and Parquet features."""
    from mindprint.export.bids import export_dataset

    source = _export_source(researcher_key, chain_id)
    with Progress(
        TextColumn("exporting"),
        BarColumn(),
        TextColumn("{task.completed}/{task.fields[known]} recordings"),
        TimeRemainingColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task("export", total=None, known="?")
        summary = export_dataset(
            source,
            out,
            projects=project or None,
            overwrite=overwrite,
            fmt=data_format,
            progress=lambda done, total: bar.update(task, completed=done, total=total, known=total),
        )
    console.print(
        f"[green]exported[/] {summary.samples} samples in {summary.recordings} recordings from "
        f"{summary.participants} participants to {out}"
    )
    for reason, count in sorted(summary.skipped.items()):
        console.print(f"  skipped {count}: {reason}")


@app.command("verify")
@_handle_errors
def verify_cmd(
    dataset: Annotated[Path, typer.Argument(help="A dataset written by `mindprint export`.")],
    rpc_url: Annotated[str | None, typer.Option(help="JSON-RPC URL of the anchoring chain (read only).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
) -> None:
    """Re-check an exported dataset: digests, CIDs, signatures, chains, EEG, labels, Merkle proofs."""
    from eth_account import Account

    from mindprint.export.verify import verify_dataset
    from mindprint.ledger.chain import ChainClient

    chain = ChainClient.connect(rpc_url, Account.create().key) if rpc_url else None  # a throwaway key: read only
    with Progress(
        TextColumn("verifying"),
        BarColumn(),
        TextColumn("{task.completed}/{task.fields[known]} recordings"),
        console=err_console,
        disable=as_json,
    ) as bar:
        task = bar.add_task("verify", total=None, known="?")
        report = verify_dataset(
            dataset,
            chain=chain,
            progress=lambda done, total: bar.update(task, completed=done, total=total, known=total),
        )
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
    else:
        _print_dataset_report(report)
    if not report.ok:
        raise typer.Exit(VERIFICATION_FAILED)


def _print_dataset_report(report: Any) -> None:
    status = "[green]VALID[/]" if report.ok else f"[red]INVALID[/] ({len(report.problems)} problems)"
    console.print(
        f"{status} · {report.files} files · {report.recordings} recordings · {report.samples} samples"
        f" · on chain: {report.on_chain}"
    )
    if report.problems:
        table = Table("file", "problem")
        for problem in report.problems[:50]:
            table.add_row(escape(problem.file), escape(problem.reason))
        console.print(table)
        if len(report.problems) > 50:
            console.print(f"… and {len(report.problems) - 50} more (use --json for all)")


def _terminal_repeat(task: dict[str, Any], reason: str) -> None:
    """Why a task is about to be shown again (the headset lost data during it)."""
    console.print(f"[yellow]task {task['id']} is shown again[/]: {escape(reason)}")


def _terminal_cue(task: dict[str, Any], index: int) -> None:
    """A challenge cue in a terminal: the screen flashes (reverse video) for ~100 ms."""
    out = sys.stdout
    if not out.isatty():
        return
    out.write("\x1b[?5h")
    out.flush()

    def restore() -> None:
        out.write("\x1b[?5l")
        out.flush()

    threading.Timer(0.1, restore).start()


def _auto_answer(task: dict[str, Any]) -> Any:
    schema = task["label_schema"]
    time.sleep(0.6)  # a human-like response time
    if schema["kind"] == "classes":
        return schema["classes"][0]
    if schema["kind"] == "rating":
        return (schema["rating_min"] + schema["rating_max"]) // 2
    return "ok"


def _ask_answer(task: dict[str, Any]) -> Any:
    schema = task["label_schema"]
    content = task["content"].get("text") or f"image {task['content'].get('image_cid')}"
    console.rule(f"task {task['id']}")
    console.print(escape(content))
    if schema["kind"] == "classes":
        choices = schema["classes"]
        for i, choice in enumerate(choices, 1):
            console.print(f"  {i}. {escape(choice)}")
        picked = typer.prompt("your answer (number)", type=int)
        if not 1 <= picked <= len(choices):
            raise ConfigurationError(f"answer must be between 1 and {len(choices)}")
        return choices[picked - 1]
    if schema["kind"] == "rating":
        return typer.prompt(f"rating {schema['rating_min']}-{schema['rating_max']}", type=int)
    return typer.prompt("your answer")


@app.command()
@_handle_errors
def label(
    api: Annotated[str, typer.Option("--api", help="Platform URL, e.g. http://127.0.0.1:8000.")],
    wallet_key_file: Annotated[
        Path | None, typer.Option(help="Wallet private key file (else $MINDPRINT_WALLET_KEY).")
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="Tasks to label.")] = 3,
    answers: Annotated[str, typer.Option(help="ask (type each answer) or auto (simulated).")] = "ask",
    project: Annotated[int | None, typer.Option(help="Only tasks of this project.")] = None,
    out: Annotated[Path | None, typer.Option(help="Session directory (default: a new one in MINDPRINT_HOME).")] = None,
    research_consent: Annotated[
        bool | None,
        typer.Option(
            "--research-consent/--no-research-consent",
            help="Sign (or withdraw) consent to share your accepted samples, pseudonymised, with researchers.",
        ),
    ] = None,
    infer: Annotated[
        bool,
        typer.Option("--infer/--no-infer", help="Run the platform's current model on every epoch; sign its output."),
    ] = False,
    keep_epochs: Annotated[
        bool,
        typer.Option(
            "--keep-epochs/--no-keep-epochs",
            help="Keep accepted epochs on this device (MINDPRINT_HOME/federated) for federated training.",
        ),
    ] = True,
    ui: Annotated[
        bool,
        typer.Option(
            "--ui/--no-ui",
            help="Label in a browser page on 127.0.0.1: tasks with hotkeys, live EEG, quality, verdicts, rewards.",
        ),
    ] = False,
    ui_port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the labeling page (0: a free one).")] = 0,
    ui_keep_open: Annotated[
        bool, typer.Option("--ui-keep-open/--no-ui-keep-open", help="Keep the page up after the last task.")
    ] = True,
    rpc_url: Annotated[str | None, typer.Option(help="EVM JSON-RPC endpoint, for the page's claim button.")] = None,
    board: BoardOption = "synthetic",
    key_file: KeyFileOption = None,
    serial_port: SerialOption = None,
    mac_address: MacOption = None,
    ip_address: IpOption = None,
    ip_port: PortOption = None,
    serial_number: SerialNumberOption = None,
    other_info: OtherOption = None,
    timeout: TimeoutOption = None,
    file: FileOption = None,
    master_board: MasterOption = None,
) -> None:
    """Label tasks while recording EEG: each answer is signed, verified and scored by the platform."""
    import uuid

    from eth_account import Account

    from mindprint.companion.client import PlatformClient
    from mindprint.companion.run import LabelingRun
    from mindprint.device.keys import DeviceKey

    if answers not in {"ask", "auto"}:
        raise ConfigurationError(f"--answers must be ask or auto, got {answers!r}")
    wallet = Account.from_key(_private_key(wallet_key_file, "MINDPRINT_WALLET_KEY"))
    key = DeviceKey.load(key_file or _settings().device_key_path)
    client = PlatformClient(api, wallet)
    client.sign_in()
    client.bind_device(key)
    if research_consent is not None:
        client.consent(research_consent)
        console.print(f"research consent {'granted' if research_consent else 'withdrawn'} (signed with your wallet)")
    session_dir = out or _settings().home / "sessions" / str(uuid.uuid4())
    source = _board_source(
        board, serial_port, mac_address, ip_address, ip_port, serial_number, other_info, timeout, file, master_board
    )
    answer = _auto_answer if answers == "auto" else _ask_answer
    table = Table(title="your labels")
    for column in ("task", "label", "result", "liveness", "attention", "reasons"):
        table.add_column(column)
    first = client.next_task(project)
    if first is None:  # nothing to label: no session is started
        console.print("no tasks to label right now")
        return
    model = _current_model(client) if infer else None
    keep = _local_epochs() if keep_epochs else None
    if ui:
        from mindprint.companion.ui import LabelingPage, claim_with, run_page

        config = client.config()
        claim = None
        if rpc_url and config.get("distributor"):
            claim = claim_with(rpc_url, _private_key(wallet_key_file, "MINDPRINT_WALLET_KEY"), config["distributor"])
        with LabelingRun(client, source, key, session_dir, chain_id=config["chain_id"], model=model, keep=keep) as run:
            page = LabelingPage(client, run, count=count, project=project, claim=claim)
            run_page(
                page,
                ui_port or None,
                lambda url: console.print(f"labeling page: [bold]{url}/[/] (Ctrl-C stops)"),
                lambda: console.print(
                    "all tasks done: the page stays up for verdicts and rewards; Ctrl-C closes it"
                    if ui_keep_open
                    else "all tasks done"
                ),
                keep_open=ui_keep_open,
            )
        console.print(f"{len(page.state.trials)} samples labelled; session kept in {session_dir}")
        return
    with LabelingRun(
        client, source, key, session_dir, chain_id=client.config()["chain_id"], model=model, keep=keep
    ) as run:
        for n in range(count):
            task = first if n == 0 else client.next_task(project)
            if task is None:
                console.print("no more tasks")
                break
            trial = run.trial(task, answer, cue=_terminal_cue, on_repeat=_terminal_repeat)
            verdict = trial.verdict
            colour = "green" if verdict["status"] == "accepted" else "red"
            table.add_row(
                str(task["id"]),
                escape(str(trial.label)),
                f"[{colour}]{verdict['status']}[/]",
                f"{verdict['scores']['liveness']:.2f}",
                f"{verdict['scores']['attention']:.2f}",
                escape("; ".join(verdict["reasons"][:2]) or "-"),
            )
    console.print(table)
    console.print(f"session kept in {session_dir}")


# -------------------------------------------------------------------------- federated
federated_app = typer.Typer(
    help="Federated training: rounds under secure aggregation with differential privacy.", no_args_is_help=True
)
app.add_typer(federated_app, name="federated")


def _local_epochs() -> Any:
    from mindprint.federated.local import LocalEpochs

    return LocalEpochs(_settings().home / "federated")


def _current_model(client: Any) -> tuple[str, Any]:
    import base64

    from mindprint.federated.model import decode_model

    cid = client.call("GET", "/federated/models")["cid"]
    block = base64.b64decode(client.call("GET", f"/federated/models/{cid}")["block"])
    return str(cid), decode_model(block)


def _privacy_line(ledger: Any, delta: float = 1e-5) -> str:
    state = "opted out" if ledger.opted_out else "taking part"
    return f"privacy spent: ε = {ledger.epsilon(delta):.2f} at δ = {delta:g} over {len(ledger.rounds)} rounds ({state})"


@federated_app.command("round")
@_handle_errors
def federated_round(
    api: ApiOption,
    min_clients: Annotated[int, typer.Option(min=2, help="Clients needed; fewer fail the round.")] = 3,
    max_clients: Annotated[int, typer.Option(min=2, help="The keys step ends as soon as this many joined.")] = 1000,
    phase_seconds: Annotated[float, typer.Option(min=1, help="Deadline of each protocol step.")] = 60.0,
    noise_multiplier: Annotated[float, typer.Option(min=0, help="DP-SGD noise (σ, times the clip norm).")] = 3.0,
    clip: Annotated[float, typer.Option(min=0.001, help="Per-window gradient clip norm.")] = 1.0,
    lr: Annotated[float, typer.Option(min=0.0001, help="Learning rate.")] = 0.5,
    local_epochs: Annotated[int, typer.Option(min=1, help="Local passes per round.")] = 1,
    epsilon_budget: Annotated[float, typer.Option(min=0.01, help="Clients refuse to go past this ε.")] = 8.0,
    wallet_key_file: WalletOption = None,
) -> None:
    """Operators: publish a round of the current model (clients join with `mindprint federated join`)."""
    client = _requester(api, wallet_key_file)
    body = {
        "min_clients": min_clients,
        "max_clients": max_clients,
        "phase_seconds": phase_seconds,
        "noise_multiplier": noise_multiplier,
        "clip": clip,
        "lr": lr,
        "local_epochs": local_epochs,
        "epsilon_budget": epsilon_budget,
    }
    state = client.call("POST", "/federated/rounds", json=body)
    console.print(
        f"round [bold]{state['id']}[/] open: model {state['model_cid']}, σ={noise_multiplier:g}, ε ≤ {epsilon_budget:g}"
    )


@federated_app.command("join")
@_handle_errors
def federated_join(
    api: ApiOption,
    round_id: Annotated[int | None, typer.Option("--round", min=1, help="Round id (default: the newest).")] = None,
    max_epsilon: Annotated[float | None, typer.Option(min=0.01, help="Your own privacy budget (ε).")] = None,
    wallet_key_file: WalletOption = None,
) -> None:
    """Train the round's model on the epochs kept on this device; send only a masked, noised update."""
    import base64

    from eth_account import Account

    from mindprint.companion.client import PlatformClient
    from mindprint.federated.client import FederatedClient
    from mindprint.federated.model import decode_model
    from mindprint.federated.training import PrivacyLedger

    local = _local_epochs()
    ledger = PrivacyLedger.load(local.privacy_path)
    client = PlatformClient(api, Account.from_key(_private_key(wallet_key_file, "MINDPRINT_WALLET_KEY")))
    client.sign_in()
    state = client.call("GET", f"/federated/rounds/{round_id}" if round_id else "/federated/rounds/latest")
    model = decode_model(base64.b64decode(client.call("GET", f"/federated/models/{state['model_cid']}")["block"]))
    windows = local.windows(model.spec)
    console.print(f"{len(windows)} labeled windows on this device for classes {', '.join(model.spec.classes)}")
    with console.status(f"round {state['id']}: training and secure aggregation…"):
        outcome = FederatedClient(client, windows, ledger, max_epsilon=max_epsilon).join(int(state["id"]))
    colour = "green" if outcome.phase == "done" else "red"
    console.print(f"round {outcome.round_id}: [{colour}]{outcome.phase}[/] → model {outcome.model_cid or '-'}")
    console.print(f"sent {outcome.bytes_sent:,} bytes in {outcome.seconds:.1f} s; {_privacy_line(ledger)}")


@federated_app.command("privacy")
@_handle_errors
def federated_privacy(
    opt_out: Annotated[bool, typer.Option("--opt-out", help="Refuse every future round.")] = False,
    opt_in: Annotated[bool, typer.Option("--opt-in", help="Take part again.")] = False,
) -> None:
    """Your privacy spent (ε, δ) across rounds; opt out of (or back into) federated training."""
    from mindprint.federated.training import PrivacyLedger

    if opt_out and opt_in:
        raise ConfigurationError("give --opt-out or --opt-in, not both")
    local = _local_epochs()
    ledger = PrivacyLedger.load(local.privacy_path)
    if opt_out or opt_in:
        ledger.opted_out = opt_out
        ledger.save()
    console.print(_privacy_line(ledger))
    console.print(f"{len(local)} epochs kept in {local.epochs}")


# ------------------------------------------------------------------------------- demo
def sample_path_for_demo() -> Path:
    sample = resources.files("mindprint.data") / "openbci_cyton_excerpt.csv.gz"
    with resources.as_file(sample) as path:
        return Path(path)


def _demo_platform(root: Path, excerpt: Path, seconds: float) -> str:
    """Steps 10–15 of the demo: the labeling platform end to end, in-process."""
    import shutil

    import httpx
    from eth_account import Account
    from eth_account.messages import encode_defunct

    from mindprint.api.server import ServerThread, start_platform
    from mindprint.api.settings import ApiSettings
    from mindprint.companion.client import PlatformClient
    from mindprint.companion.run import LabelingRun
    from mindprint.device.keys import DeviceKey
    from mindprint.device.openbci import import_recording
    from mindprint.ledger.chain import ChainClient
    from mindprint.ledger.rewards import build_epoch, claim_reward, publish_epoch

    platform_dir = root / "platform"
    for earlier in (platform_dir, root / "labeling_session", root / "bot_session", root / "dataset"):
        shutil.rmtree(earlier, ignore_errors=True)  # a demo run starts afresh
    operator, requester, contributor, bot = (Account.create() for _ in range(4))
    settings = ApiSettings(
        database_url=f"sqlite:///{platform_dir / 'platform.db'}",
        operators=(operator.address.lower(),),
        data_dir=platform_dir,
    )
    running = start_platform(settings, worker_interval=0.2)

    def token(http: httpx.Client, account: Any) -> dict[str, str]:
        issued = http.post("/auth/nonce", json={"address": account.address}).json()
        signature = account.sign_message(encode_defunct(text=issued["message"])).signature.to_0x_hex()
        answer = http.post("/auth/verify", json={"message": issued["message"], "signature": signature}).json()
        return {"Authorization": f"Bearer {answer['access_token']}"}

    try:
        with ServerThread(running.app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
            console.rule("[bold]labeling platform")
            console.print(
                f"10. platform on {server.url} (uvicorn, loopback) · embedded EVM chain {running.chain.chain_id}"
            )
            http.put(f"/accounts/{requester.address}/role", json={"role": "requester"}, headers=token(http, operator))
            as_requester = token(http, requester)
            schema = {"kind": "classes", "classes": ["relaxed", "focused"]}
            project = http.post(
                "/projects",
                json={"name": "demo: how do you feel?", "label_schema": schema, "redundancy": 1},
                headers=as_requester,
            ).json()
            items = [{"content": {"text": f"Trial {i + 1}: are you relaxed or focused?"}} for i in range(3)]
            http.post(f"/projects/{project['id']}/items", json={"items": items}, headers=as_requester)
            console.print(f"11. requester created project {project['id']} with {len(items)} items")

            key = DeviceKey.generate()
            client = PlatformClient(server.url, contributor)
            client.sign_in()
            client.bind_device(key)
            client.consent(True)  # research consent, signed with the wallet
            playback = root / "labeling_playback.csv"
            import_recording(excerpt, playback, start_seconds=min(seconds + 1, 12), seconds=17)
            source = _board_source("playback", None, None, None, None, None, None, None, playback, "cyton")
            console.print(
                "12. contributor labels while real Cyton EEG replays (answers simulated; the platform's model "
                "runs on every epoch, its output signed and re-executed by the platform):"
            )
            accepted = []
            chain_id = client.config()["chain_id"]
            model = _current_model(client)
            from mindprint.federated.local import LocalEpochs

            keep = LocalEpochs(root / "federated")  # accepted epochs stay on the "device" for federated rounds
            with LabelingRun(
                client, source, key, root / "labeling_session", chain_id=chain_id, model=model, keep=keep
            ) as run:
                for _ in range(2):
                    task = client.next_task()
                    if task is None:
                        break
                    trial = run.trial(task, _auto_answer)
                    verdict = trial.verdict
                    console.print(
                        f"    task {task['id']} → {trial.label!r}: [bold]{verdict['status']}[/] "
                        f"(liveness {verdict['scores']['liveness']:.2f}, "
                        f"attention {verdict['scores']['attention']:.2f})"
                    )
                    if verdict["status"] == "accepted":
                        accepted.append(verdict)
            proof = None
            deadline = time.monotonic() + 30
            while accepted and proof is None and time.monotonic() < deadline:
                try:
                    proof = client.proof(accepted[0]["sample_cid"])
                except MindprintError:
                    time.sleep(0.3)
            if proof:
                console.print(
                    f"13. pinned (encrypted) and anchored: tx {proof['tx_hash']} block {proof['block']}, "
                    f"Merkle proof {'verifies' if proof['verified_offline'] else 'FAILS'}"
                )
            epoch = (
                build_epoch(
                    1,
                    [(contributor.address, v["scores"]["liveness"] * v["scores"]["attention"]) for v in accepted],
                    pool=10**18,
                )
                if accepted
                else None
            )
            if epoch is not None:
                publish_epoch(running.chain, running.deployment.distributor, epoch)
                running.chain.fund(contributor.address, 10**17)
                wallet_chain = ChainClient(running.chain.w3, contributor)
                claimed = claim_reward(wallet_chain, running.deployment.distributor, epoch.claims[contributor.address])
                token_contract = running.chain.contract("RewardToken", running.deployment.token)
                balance = running.chain.call(token_contract.functions.balanceOf(contributor.address))
                console.print(
                    f"14. reward epoch 1 published; contributor claimed {balance / 1e18:.2f} MIND in {claimed.tx_hash}"
                )

            bot_key = DeviceKey.generate()
            bot_client = PlatformClient(server.url, bot)
            bot_client.sign_in()
            bot_client.bind_device(bot_key)
            console.print("15. a contributor streaming BrainFlow's synthetic board tries the next task:")
            with LabelingRun(
                bot_client,
                _board_source("synthetic", None, None, None, None, None, None, None, None, None),
                bot_key,
                root / "bot_session",
                chain_id=chain_id,
            ) as run:
                task = bot_client.next_task()
                bot_verdict = run.trial(task, _auto_answer).verdict if task else None
            if bot_verdict:
                console.print(
                    f"    [bold red]{bot_verdict['status']}[/]: {escape('; '.join(bot_verdict['reasons'][:3]))}"
                )
            exported = _demo_export(http, as_requester, project["id"], root, running) if proof else "not exported"
            return (
                f"platform: {len(accepted)} samples accepted, anchored={'yes' if proof else 'no'}, "
                f"reward claimed={'yes' if epoch else 'no'}, "
                f"synthetic board {bot_verdict['status'] if bot_verdict else 'n/a'}; dataset {exported}"
            )
    finally:
        running.close()


def _demo_export(http: Any, headers: dict[str, str], project: int, root: Path, running: Any) -> str:
    """Step 16: the requester downloads the BIDS export; it is validated and verified."""
    import io
    import shutil
    import subprocess
    import sys
    import zipfile

    from mindprint.export.verify import verify_dataset

    response = http.get(f"/projects/{project}/export", headers=headers)
    if response.status_code != 200:
        console.print(f"16. export failed: {escape(response.text)}")
        return "FAILED"
    target = root / "dataset"
    shutil.rmtree(target, ignore_errors=True)
    zipfile.ZipFile(io.BytesIO(response.content)).extractall(root)
    validator = Path(sys.executable).parent / "bids-validator-deno"
    validated = "validator not installed"
    if validator.exists():
        result = subprocess.run(
            [str(validator), "--format", "json", str(target)], capture_output=True, text=True, check=False, timeout=300
        )
        issues = json.loads(result.stdout)["issues"]["issues"] if result.stdout.startswith("{") else []
        errors = sum(1 for issue in issues if issue["severity"] == "error")
        validated = f"BIDS validator: {errors} errors, {len(issues) - errors} warnings"
    report = verify_dataset(target, chain=running.chain)
    console.print(
        f"16. requester downloaded the BIDS export ({len(response.content) / 1024:.0f} KiB) → {target}; {validated}"
    )
    console.print(
        f"    mindprint verify: {'[green]VALID[/]' if report.ok else '[red]INVALID[/]'} · {report.files} files · "
        f"{report.recordings} recordings · {report.samples} samples · proofs on {report.on_chain}"
    )
    for problem in report.problems[:5]:
        console.print(f"    [red]{escape(str(problem))}[/]")
    return "VALID" if report.ok else "INVALID"


def _print_verification_and_anchoring(
    session_dir: Path, root: Path, report: Any, data: np.ndarray, header: Any
) -> None:
    from mindprint.device.session import SESSION_FILE
    from mindprint.labeling.verification.corpus import synthetic_board
    from mindprint.labeling.verification.model import load_default_model
    from mindprint.labeling.verification.scores import authenticity_score
    from mindprint.ledger.anchoring import Anchorer
    from mindprint.ledger.blockstore import Blockstore
    from mindprint.ledger.chain import ChainClient, deploy_contracts
    from mindprint.ledger.crypto import KeyStore, RecipientKey, new_data_key, wrap_key
    from mindprint.ledger.sealing import seal_session

    model = load_default_model()
    live = model.assess(data, header.sfreq)
    console.print(
        f"7. verification: authenticity {authenticity_score(report, device_bound=True).value:.0f} "
        f"(device binding assumed in this offline demo) · liveness {live.score:.2f} "
        f"(threshold {model.threshold:.2f}) → {'[green]live human EEG[/]' if live.accepted else '[red]rejected[/]'}"
    )
    board, board_rate = synthetic_board(5.0)
    fake = model.assess(board, board_rate)
    verdict = "[red]rejected[/]" if not fake.accepted else "[yellow]accepted[/]"
    console.print(
        f"   BrainFlow synthetic board: liveness {fake.score:.2f} → {verdict}: {escape('; '.join(fake.reasons[:3]))}"
    )

    store = Blockstore(root / "ledger" / "blocks")
    keys = KeyStore(root / "ledger" / "keys")
    platform = RecipientKey.generate()
    data_key = new_data_key()
    keys.add(header.session, wrap_key(data_key, platform.public_key, header.session))
    manifest = seal_session((session_dir / SESSION_FILE).read_bytes(), header.session, data_key, store)
    store.pin(manifest)
    console.print(f"8. sealed (encrypted) for IPFS: manifest {manifest}")
    chain = ChainClient.embedded()
    deployment = deploy_contracts(chain)
    journal = root / "ledger" / "journal.sqlite"
    journal.unlink(missing_ok=True)
    anchorer = Anchorer(journal, store, chain, deployment.registry)
    anchorer.enqueue([manifest])
    anchorer.run()
    proof = anchorer.proof(manifest)
    console.print(
        f"9. anchored on the embedded EVM (chain {proof.chain_id}) in {proof.tx_hash}, block {proof.block}; "
        f"proof offline {'ok' if proof.verify_offline() else 'FAILED'}, "
        f"on chain {'ok' if anchorer.verify_on_chain(proof) else 'FAILED'}"
    )
    anchorer.close()


def _print_edge_summary(data: np.ndarray, header: Any) -> None:
    """Step 6 of the demo: the edge pipeline on the session's EEG (volts, EEG rows)."""
    from mindprint.signal.pipeline import process_recording

    result = process_recording(data, header.sfreq, header.eeg_names)
    summary = result.summary()
    relative = summary["relative_power"]
    assert isinstance(relative, dict)
    console.print("6. edge pipeline on the recorded EEG:")
    console.print(
        f"   pipeline {summary['pipeline_version']} · mains {summary['line_freq']} Hz"
        f" · quality {summary['quality']:.2f}"
    )
    console.print("   relative power " + " · ".join(f"{band} {100 * value:.0f} %" for band, value in relative.items()))
    console.print(
        f"   alpha peak {summary['alpha_peak']:.1f} Hz · 1/f exponent {summary['aperiodic_exponent']:.2f} · "
        f"engagement {summary['engagement']:.2f} · artifacts {summary['artifacts'] or 'none'}"
    )


@app.command()
@_handle_errors
def demo(
    workdir: Annotated[Path | None, typer.Option(help="Where to write the demo's files (default: a temp dir).")] = None,
    seconds: Annotated[float, typer.Option(min=1, max=30, help="Seconds of real EEG to replay.")] = 15.0,
) -> None:
    """Replay real Cyton EEG, record a signed session, verify it and export it."""
    from mindprint.device.keys import DeviceKey
    from mindprint.device.openbci import import_recording
    from mindprint.device.session import read_eeg, verify_session
    from mindprint.export.session_file import export_session

    root = workdir or Path(tempfile.mkdtemp(prefix="mindprint-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]mindprint demo")
    key_path = root / "device_key.pem"
    key = DeviceKey.load_or_create(key_path)
    console.print(f"1. device key {key.device_id[:16]}… at {key_path} (a demo key, not your own)")

    sample = resources.files("mindprint.data") / "openbci_cyton_excerpt.csv.gz"
    playback = root / "cyton_playback.csv"
    with resources.as_file(sample) as sample_path:
        recording = import_recording(sample_path, playback, seconds=seconds + 2)
    console.print(f"2. real OpenBCI Cyton EEG imported for BrainFlow playback: {recording.data.shape[1]} samples")

    session_dir = root / "session"
    if (session_dir / "session.car").exists():
        (session_dir / "session.car").unlink()
    source = _board_source("playback", None, None, None, None, None, None, None, playback, "cyton")
    console.print(f"3. recording {seconds:g} s through BrainFlow's playback board (real time)…")
    markers = [(seconds * 0.3, "stimulus"), (seconds * 0.3 + 0.6, "response")]
    summary = _record(source, session_dir, key_path, seconds, 1.0, markers)

    report = verify_session(session_dir)
    console.print("4. verification:")
    _print_report(report)
    fif = export_session(session_dir, root / "session_raw.fif")
    console.print(f"5. exported for MNE: {fif}")
    eeg, header = read_eeg(session_dir)  # read once for steps 6 and 7
    _print_edge_summary(eeg, header)
    _print_verification_and_anchoring(session_dir, root, report, eeg, header)
    platform_summary = _demo_platform(root, sample_path_for_demo(), seconds)
    console.rule("[bold]summary")
    console.print(
        f"session: chunks {summary.chunks} · samples {summary.samples} · markers {report.markers} · "
        f"verification {'VALID' if report.ok else 'INVALID'} · files in {root}"
    )
    console.print(platform_summary)
    if not report.ok:
        raise typer.Exit(VERIFICATION_FAILED)


if __name__ == "__main__":  # pragma: no cover
    app()

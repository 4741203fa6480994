"""Postfix's ``smtp-sink`` on 127.0.0.1: a fast, real SMTP peer for tests and benchmarks.

``smtp-sink`` is not Rail's code and not Python, so what it receives is an independent
account of what Rail sent. With a dump directory it writes one file per transaction
(``-d DIR/%M.``): its own ``X-*`` lines (HELO, MAIL and RCPT arguments), a ``Received``
header, then the message as received, dot-unstuffed, each line ending in LF instead of
CRLF, and one empty line. :func:`read_dump` takes such a file apart.

Usage (inside a trial ``TestCase`` or any reactor-driven code)::

    sink = await start_smtp_sink(reactor, "-q", ".", dump_dir=path)   # extra options
    ... deliver to 127.0.0.1:sink.port ...
    await sink.stop()

Options worth knowing (``man smtp-sink``): ``-p`` no PIPELINING, ``-8`` no 8BITMIME,
``-e`` no ESMTP, ``-q CMD`` disconnect without reply after CMD (``.`` is the final dot),
``-Q CMD`` 421 after CMD, ``-r``/``-f CMD`` soft/hard reject CMD, ``-w N`` delay the DATA
reply.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import error, protocol, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.python.failure import Failure

from tests.support.ports import free_port
from tests.support.tools import missing

__all__ = ["SMTP_SINK", "SMTPSink", "SinkDump", "read_dump", "start_smtp_sink"]

SMTP_SINK = "/usr/sbin/smtp-sink"


class _SinkProcess(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data[: 65536 - len(self.output)]

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


@attrs.define
class SMTPSink:
    """A running ``smtp-sink``; ``dump_dir`` holds one file per transaction, if asked."""

    port: int
    dump_dir: Path | None
    _process: _SinkProcess

    @property
    def output(self) -> str:
        """What smtp-sink printed (errors, and the conversation with ``-v``)."""
        return self._process.output.decode("utf-8", "replace")

    def dumps(self) -> list[SinkDump]:
        """Every transaction dumped so far (order not meaningful)."""
        if self.dump_dir is None:
            raise ValueError("this smtp-sink was started without a dump directory")
        return [read_dump(path.read_bytes()) for path in sorted(self.dump_dir.iterdir())]

    async def stop(self) -> None:
        """SIGTERM, then wait for the process to end."""
        if not self._process.ended.called:
            try:
                self._process.transport.signalProcess("TERM")  # type: ignore[union-attr]
            except error.ProcessExitedAlready:
                pass
        await self._process.ended


@attrs.frozen
class SinkDump:
    """One dumped transaction: envelope arguments as smtp-sink logged them and the
    message with LF line ends."""

    helo: str
    mail_args: str
    rcpt_args: tuple[str, ...]
    message: bytes


def read_dump(raw: bytes) -> SinkDump:
    """Split a dump file into smtp-sink's envelope lines and the message."""
    helo, mail_args, rcpt_args = "", "", []
    position = 0
    while not raw.startswith(b"Received: ", position):
        end = raw.index(b"\n", position)
        name, _, value = raw[position:end].decode().partition(": ")
        if name == "X-Helo-Args":
            helo = value
        elif name == "X-Mail-Args":
            mail_args = value
        elif name == "X-Rcpt-Args":
            rcpt_args.append(value)
        position = end + 1
    for _ in range(3):  # "Received: from", "\tby ...;", "\tdate"
        position = raw.index(b"\n", position) + 1
    if not raw.endswith(b"\n"):
        raise ValueError("truncated dump")
    return SinkDump(helo, mail_args, tuple(rcpt_args), raw[position:-1])


async def start_smtp_sink(
    reactor: Any, *options: str, dump_dir: Path | None = None, timeout: float = 10.0
) -> SMTPSink:
    """Start ``smtp-sink OPTIONS [-d DIR/%M.] 127.0.0.1:PORT 100`` and wait (at most
    ``timeout`` seconds) until it accepts connections. Skips the test if Postfix's
    smtp-sink is not installed (fails under ``CI=true``)."""
    if not os.access(SMTP_SINK, os.X_OK):
        missing(f"{SMTP_SINK} is not installed (Debian package postfix)")
    args = [SMTP_SINK, *options]
    if os.geteuid() == 0:
        # smtp-sink insists on -u when started as root. Staying root (the test's own
        # user) keeps the dump directory writable wherever the test put it.
        args += ["-u", pwd.getpwuid(0).pw_name]
    if dump_dir is not None:
        args += ["-d", f"{dump_dir}/%M."]
    port = free_port()
    args += [f"127.0.0.1:{port}", "100"]
    process = _SinkProcess()
    reactor.spawnProcess(process, SMTP_SINK, args, env={})
    sink = SMTPSink(port, dump_dir, process)
    try:
        await _wait_for_listener(reactor, port, process, timeout)
    except BaseException:
        await sink.stop()
        raise
    return sink


async def _wait_for_listener(
    reactor: Any, port: int, process: _SinkProcess, timeout: float
) -> None:
    """Connect until something accepts (then hang up), bounded by ``timeout``."""
    deadline = reactor.seconds() + timeout
    while True:
        if process.ended.called:
            raise RuntimeError(f"smtp-sink exited: {process.output.decode('utf-8', 'replace')}")
        try:
            probe = await connectProtocol(
                TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=1), protocol.Protocol()
            )
        except error.ConnectError:
            if reactor.seconds() > deadline:
                raise RuntimeError(f"smtp-sink not listening on {port} after {timeout}s") from None
            await task.deferLater(reactor, 0.02)
            continue
        probe.transport.abortConnection()  # type: ignore[union-attr]
        return

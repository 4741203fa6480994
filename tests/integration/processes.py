"""Running ``rail`` and ``twistd rail`` as real processes from trial tests."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

from twisted.internet import error, protocol, reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks, returnValue
from twisted.internet.utils import getProcessOutputAndValue

from tests.support.ports import free_port

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def other_listeners() -> list[str]:
    """``rail init --dev`` arguments giving the inbound, HTTP and DNS listeners free ports,
    so a test's Rail never collides with another process on the default dev ports."""
    return [
        "--inbound-port",
        str(free_port()),
        "--http-port",
        str(free_port()),
        "--dns-port",
        str(free_port()),
    ]


def run(
    executable: str, *args: str, env: dict[str, str] | None = None, path: str | None = None
) -> Deferred:
    """Run a program to completion; fires with (stdout, stderr, exit code)."""
    return getProcessOutputAndValue(executable, args, env={**os.environ, **(env or {})}, path=path)


def rail(*args: str) -> Deferred:
    return run(str(BIN / "rail"), *args)


class Server(protocol.ProcessProtocol):
    """A running twistd; ``ended`` fires with the exit code."""

    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        """Fire ``ended`` with the exit code, or minus the signal number.

        twistd re-raises the signal that stopped it once shutdown is complete, so a clean
        SIGTERM shutdown ends as -15.
        """
        value = reason.value
        if isinstance(value, error.ProcessTerminated):
            code = value.exitCode if value.exitCode is not None else -value.signal
        else:
            code = 0
        self.ended.callback(code)

    def signal(self, name: str) -> None:
        self.transport.signalProcess(name)


def start_twistd(
    args: list[str], env: dict[str, str] | None = None, path: str | None = None
) -> Server:
    server = Server()
    reactor.spawnProcess(
        server,
        str(BIN / "twistd"),
        [str(BIN / "twistd"), "-n", "--pidfile=", *args],
        env={**os.environ, **(env or {})},
        path=path,
    )
    return server


@inlineCallbacks
def wait_for_port(port: int, server: Server, timeout: float = 20.0) -> Any:
    """Poll until something accepts on 127.0.0.1:port (bounded), or the server died."""
    waited = 0.0
    while waited < timeout:
        if server.ended.called:
            raise AssertionError(f"server exited early:\n{server.output.decode()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                returnValue(None)
        yield task.deferLater(reactor, 0.1, lambda: None)
        waited += 0.1
    raise AssertionError(f"nothing listening on {port} after {timeout}s:\n{server.output.decode()}")


@inlineCallbacks
def wait_for_output(text: bytes, server: Server, timeout: float = 20.0) -> Any:
    """Poll until the server has logged ``text`` (bounded), or it died."""
    waited = 0.0
    while waited < timeout:
        if text in server.output:
            returnValue(None)
        if server.ended.called:
            raise AssertionError(f"server exited early:\n{server.output.decode()}")
        yield task.deferLater(reactor, 0.1, lambda: None)
        waited += 0.1
    raise AssertionError(f"{text!r} not logged after {timeout}s:\n{server.output.decode()}")

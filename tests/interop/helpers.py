"""A real ``twistd rail`` on loopback for interop tests, and the blocking clients they use."""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import yaml
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from rail.config import Config, load_config
from rail.store.inspect import StoredMessage, get_message, list_messages
from rail.store.model import StoreUnavailableError
from rail.store.schema import database_path
from tests.integration.processes import Server, free_port, rail, start_twistd, wait_for_port

SENDER = "app@rail.test"


@attrs.frozen
class RunningRail:
    """A dev set-up (``rail init --dev``) served by a twistd child process."""

    directory: Path
    https_port: int
    smtps_port: int
    server: Server

    @property
    def queue(self) -> Path:
        return self.directory / "data" / "queue"

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.directory / "app.crt"

    @property
    def key(self) -> Path:
        return self.directory / "app.key"

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.https_port}{path}"

    @property
    def config(self) -> Config:
        return load_config(self.directory / "rail.yaml")

    @property
    def inbound_port(self) -> int:
        spec = self.config.listen.inbound
        assert spec is not None
        return spec.port

    def stored(self) -> list[StoredMessage]:
        """Every queued message; none while the queue database does not exist yet."""
        try:
            return list_messages(self.queue)
        except StoreUnavailableError:
            if database_path(self.queue).exists():
                raise
            return []

    def message(self, message_id: str) -> StoredMessage | None:
        return get_message(self.queue, message_id)

    def smtp_context(self, client_certificate: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if client_certificate:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context

    def smtp(self, client_certificate: bool = True) -> smtplib.SMTP_SSL:
        """A connected, greeted SMTPS client (blocking: call it in a thread)."""
        return smtplib.SMTP_SSL(
            "127.0.0.1",
            self.smtps_port,
            context=self.smtp_context(client_certificate),
            timeout=10,
        )


@inlineCallbacks
def start_rail(
    case: TestCase,
    configure: Callable[[dict[str, Any]], None] | None = None,
    setup: Callable[[Path], None] | None = None,
) -> Any:
    """``rail init --dev`` into a fresh directory, start ``twistd rail`` on free ports, wait
    until both listeners accept, and stop it (SIGTERM, wait for exit) when ``case`` ends.

    ``configure`` may change the generated configuration (as loaded YAML) first; ``setup``
    is then called with the directory (to issue certificates, say) before Rail starts."""
    directory = Path(case.mktemp()).absolute()
    https_port, smtps_port = free_port(), free_port()
    out, err, code = yield rail(
        "init",
        "--dev",
        str(directory),
        "--https-port",
        str(https_port),
        "--submission-port",
        str(smtps_port),
        "--inbound-port",
        str(free_port()),
        "--http-port",
        str(free_port()),
        "--dns-port",
        str(free_port()),
    )
    case.assertEqual(code, 0, err)
    config = directory / "rail.yaml"
    # The shutdown drain delay only slows each test's tearDown.
    text = config.read_text()
    config.write_text(re.sub(r"(?m)^(\s*drain_delay:).*$", r'\1 "0s"', text))
    if configure is not None:
        document = yaml.safe_load(config.read_text())
        configure(document)
        config.write_text(yaml.safe_dump(document))
    if setup is not None:
        setup(directory)
    server = start_twistd(["rail", "--config", str(config)])
    case.addCleanup(_stop, server)
    yield wait_for_port(https_port, server)
    yield wait_for_port(smtps_port, server)
    return RunningRail(directory, https_port, smtps_port, server)


@inlineCallbacks
def _stop(server: Server) -> Any:
    if not server.ended.called:
        server.signal("TERM")
    yield server.ended


def message_bytes(subject: str, body: str, sender: str = SENDER) -> bytes:
    return (
        f"From: <{sender}>\r\nTo: <someone@example.com>\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    ).encode("ascii")

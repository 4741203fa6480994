"""``twistd rail`` as a system service: READY=1 for systemd, and the data directory kept
the service user's when twistd starts as root and drops to ``--uid``."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import socket
import ssl
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from twisted.internet import protocol, reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.processes import (
    BIN,
    Server,
    free_port,
    other_listeners,
    rail,
    start_twistd,
    wait_for_port,
)
from tests.support.tools import need_root


class _Notifications(protocol.DatagramProtocol):
    """What a fake systemd receives on $NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received.append(data)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class _ServiceCase(TestCase):
    timeout = 120

    async def init(self, base: Path) -> None:
        """``rail init --dev`` into ``base/dev`` on free ports."""
        self.dir = base / "dev"
        self.https_port, self.smtps_port = free_port(), free_port()
        out, err, code = await rail(
            "init", "--dev", str(self.dir), "--https-port", str(self.https_port),
            "--submission-port", str(self.smtps_port), *other_listeners(),
        )  # fmt: skip
        self.assertEqual(code, 0, err)
        self.config = self.dir / "rail.yaml"
        self.data = self.dir / "data"

    def short_base(self) -> Path:
        """A directory under /tmp: socket paths must fit in sun_path, and another user
        must be able to reach it (trial's temporary directory guarantees neither)."""
        base = Path(tempfile.mkdtemp(prefix="rail-service-"))
        base.chmod(0o755)
        self.addCleanup(shutil.rmtree, base, True)
        return base

    def stop_at_end(self, server: Server) -> None:
        async def stop() -> None:
            if not server.ended.called:
                server.signal("TERM")
            await server.ended

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))


class NotifyTests(_ServiceCase):
    async def expect(self, notifications: _Notifications, state: bytes, server: Server) -> None:
        """Wait (bounded) for ``state``; fail at once if the server exits first."""
        for _ in range(600):
            if state in notifications.received:
                return
            if server.ended.called:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        self.fail(f"no {state!r}; got {notifications.received}:\n{server.output.decode()}")

    async def test_ready_after_listeners_stopping_at_sigterm(self) -> None:
        """With $NOTIFY_SOCKET set, Rail sends READY=1 when the HTTPS and SMTPS listeners
        already accept connections, and STOPPING=1 as soon as SIGTERM starts the drain."""
        base = self.short_base()
        await self.init(base)
        notifications = _Notifications()
        socket_path = str(base / "notify")
        port = reactor.listenUNIXDatagram(socket_path, notifications)
        self.addCleanup(port.stopListening)
        server = start_twistd(
            ["rail", "--config", str(self.config)], env={"NOTIFY_SOCKET": socket_path}
        )
        self.stop_at_end(server)
        await self.expect(notifications, b"READY=1", server)
        self.assertTrue(_accepts(self.https_port), "HTTPS not accepting at READY=1")
        self.assertTrue(_accepts(self.smtps_port), "SMTPS not accepting at READY=1")
        self.assertEqual(notifications.received, [b"READY=1"])
        server.signal("TERM")
        await self.expect(notifications, b"STOPPING=1", server)
        self.assertEqual(await server.ended, -15, server.output.decode()[-2000:])
        self.assertEqual(notifications.received, [b"READY=1", b"STOPPING=1"])


class RunAsTests(_ServiceCase):
    def setUp(self) -> None:
        need_root("starting twistd as root with --uid")

    def send(self) -> dict[str, Any]:
        """POST /api/v1/send with the app's certificate (blocking)."""
        context = ssl.create_default_context(cafile=str(self.dir / "ca.crt"))
        context.load_cert_chain(str(self.dir / "app.crt"), str(self.dir / "app.key"))
        body = {"from": "app@rail.test", "to": ["bob@example.com"], "subject": "Hi"}
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.https_port}/api/v1/send",
            data=json.dumps({**body, "body_text": "Hello"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            document: dict[str, Any] = json.load(response)
        return document

    def owners(self) -> dict[str, tuple[str, str]]:
        """Owner and group of every entry under the data directory, by relative path."""
        found = {".": self.data}
        for root, directories, files in os.walk(self.data):
            for name in (*directories, *files):
                path = Path(root, name)
                found[str(path.relative_to(self.data))] = path
        return {
            name: (
                pwd.getpwuid(path.lstat().st_uid).pw_name,
                grp.getgrgid(path.lstat().st_gid).gr_name,
            )
            for name, path in found.items()
        }

    async def start_as_root_then_stop(self) -> dict[str, tuple[str, str]]:
        """``rail init --dev`` and a run of ``twistd --uid nobody`` as root that accepts a
        message; the owners of the data directory's entries while it ran."""
        base = self.short_base()
        self.base = base
        await self.init(base)
        # The operator's part: the config readable by the service user.
        self.dir.chmod(0o755)
        self.config.chmod(0o644)
        for name in ("ca", "tls", "registry.sqlite3"):
            self.assertTrue((self.data / name).exists(), f"rail init made no {name}")
        server = start_twistd(["--uid", "nobody", "rail", "--config", str(self.config)])
        self.stop_at_end(server)
        await wait_for_port(self.https_port, server)
        self.assertEqual(
            await _uids_once_dropped(server.transport.pid),
            [str(pwd.getpwnam("nobody").pw_uid)] * 4,
        )
        accepted = await deferToThread(self.send)
        self.assertEqual(accepted["status"], "queued", accepted)
        owners = self.owners()
        server.signal("TERM")
        self.assertEqual(await server.ended, -15, server.output.decode()[-2000:])
        return owners

    async def test_data_dir_owned_by_uid(self) -> None:
        """Started as root with ``--uid nobody``, twistd binds, hands everything it (and
        ``rail init`` as root) created under data_dir to nobody's user and group (the CA,
        the server certificate, the registry, DKIM keys, the webhook key, the queue
        database and its WAL files), runs as nobody and accepts mail."""
        group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
        owners = await self.start_as_root_then_stop()
        for name in ("dkim", "queue", "webhook", "ca", "tls", "registry.sqlite3"):
            self.assertTrue(
                any(path == name or path.startswith(f"{name}/") for path in owners),
                f"no {name} in {sorted(owners)}",
            )
        wrong = {name: who for name, who in owners.items() if who != ("nobody", group)}
        self.assertEqual(wrong, {})

    async def test_unprivileged_start_on_handed_over_data(self) -> None:
        """After a start as root with ``--uid nobody``, a server started as nobody from
        the outset (as under systemd's ``User=``) starts on the same data and accepts mail."""
        nobody = pwd.getpwnam("nobody")
        executable = Path(sys.executable).resolve()
        hidden = [p for p in executable.parents if not p.stat().st_mode & 0o001]
        if hidden:
            raise SkipTest(f"{executable} is not reachable by other users ({hidden[0]})")
        await self.start_as_root_then_stop()
        server = Server()
        reactor.spawnProcess(
            server,
            str(BIN / "twistd"),
            [str(BIN / "twistd"), "-n", "--pidfile=", "rail", "--config", str(self.config)],
            env=dict(os.environ),
            uid=nobody.pw_uid,
            gid=nobody.pw_gid,
            path=str(self.base),
        )
        self.stop_at_end(server)
        await wait_for_port(self.https_port, server)
        accepted = await deferToThread(self.send)
        self.assertEqual(accepted["status"], "queued", accepted)


async def _uids_once_dropped(pid: int) -> list[str]:
    """The real, effective, saved and file-system uids of ``pid`` once they are no longer
    root's, or as they are after 10 s: twistd listens while still root (its ports are
    bound first) and drops to ``--uid`` just after, so the port being open is too early."""
    uids: list[str] = []
    for _ in range(100):
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        if uids != ["0"] * 4:
            break
        await task.deferLater(reactor, 0.1, lambda: None)
    return uids

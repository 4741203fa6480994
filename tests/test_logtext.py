"""rail.logtext: the same lines as twistd's formatter, and twistd's choice of output."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from twisted.logger import (
    FileLogObserver,
    LegacyLogObserverWrapper,
    Logger,
    LogLevel,
    LogPublisher,
    formatEventAsClassicLogText,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from rail import logtext, tap
from rail.logtext import classic_line, twistd_observer
from rail.tap import Options, twistd_logger

_WHEN = 1_763_700_000.25


class _Thing:
    def __init__(self) -> None:
        self.name = "thing"

    def __repr__(self) -> str:
        return "<Thing>"

    def __str__(self) -> str:
        return "a thing"

    def call(self) -> str:
        return "called"


def _event(log_format: Any, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "log_format": log_format,
        "log_time": _WHEN,
        "log_namespace": "rail.test",
        "log_level": LogLevel.info,
    }
    event.update(fields)
    return event


class ClassicLineTests(SynchronousTestCase):
    def setUp(self) -> None:
        logtext._stamp[:] = [None, "-"]

    def assertSameAsTwisted(self, event: dict[str, Any]) -> None:
        self.assertEqual(classic_line(dict(event)), formatEventAsClassicLogText(dict(event)))

    def test_plain_events_never_reach_twisteds_formatter(self) -> None:
        def unused(event: Any) -> None:
            raise AssertionError(f"Twisted's formatter called for {event}")

        self.patch(logtext, "formatEventAsClassicLogText", unused)
        line = classic_line(_event("id={msg_id} n={n:>3} r={r!r}", msg_id="01A", n=7, r="x"))
        self.assertEqual(line, "2025-11-21T04:40:00+0000 [rail.test#info] id=01A n=  7 r='x'\n")

    def test_plain_fields(self) -> None:
        self.assertSameAsTwisted(
            _event("accepted id={msg_id} size={size} tls={tls}", msg_id="01ABC", size=12, tls=False)
        )

    def test_conversions_and_specs(self) -> None:
        self.assertSameAsTwisted(
            _event(
                "{a!r} {a!s} {a!a} {n:>6} {f:.3f} {{literal}} {t!r:>10}",
                a="é",
                n=42,
                f=1 / 3,
                t=_Thing(),
            )
        )

    def test_objects_use_their_own_format(self) -> None:
        self.assertSameAsTwisted(_event("{thing} {level}", thing=_Thing(), level=LogLevel.warn))

    def test_lookups_and_calls_go_to_twisted(self) -> None:
        thing = _Thing()
        for log_format in ("{t.name}", "{t.call()}", "{d[key]}", "{t.name!r:>9}", "{0}", "{}"):
            self.assertSameAsTwisted(_event(log_format, t=thing, d={"key": "v"}))

    def test_missing_field_and_bad_format(self) -> None:
        for log_format in ("no {such} field", "unclosed {brace", "{x!z}", "{x:{w}}"):
            self.assertSameAsTwisted(_event(log_format, x=1, w=3))

    def test_no_format_or_empty_text(self) -> None:
        self.assertIsNone(classic_line(_event(None)))
        self.assertIsNone(classic_line(_event("")))
        self.assertSameAsTwisted(_event(""))

    def test_bytes_format(self) -> None:
        self.assertSameAsTwisted(_event(b"bytes {x}", x=1))

    def test_system_namespace_level_and_time(self) -> None:
        self.assertSameAsTwisted(_event("s", log_system="RailESMTP,3,127.0.0.1"))
        self.assertSameAsTwisted({"log_format": "no namespace, level or time"})
        self.assertSameAsTwisted(_event("t", log_time=_WHEN + 0.7))
        self.assertSameAsTwisted(_event("t", log_time=_WHEN + 86_400 * 180))

    def test_local_time_zone_with_summer_time(self) -> None:
        previous = os.environ.get("TZ")

        def restore() -> None:
            logtext._stamp[:] = [None, "-"]
            if previous is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = previous
            time.tzset()

        self.addCleanup(restore)
        os.environ["TZ"] = "Europe/Berlin"
        time.tzset()
        logtext._stamp[:] = [None, "-"]  # a process's zone is fixed; this test changes it
        for offset in (0, 86_400 * 120, 86_400 * 180, 86_400 * 240):
            event = _event("t", log_time=_WHEN + offset)
            self.assertSameAsTwisted(event)
            self.assertRegex(str(classic_line(event)), r"^\S+\+0[12]00 ")

    def test_timestamp_reused_within_a_second_only(self) -> None:
        first = classic_line(_event("x", log_time=_WHEN))
        same = classic_line(_event("x", log_time=_WHEN + 0.5))
        later = classic_line(_event("x", log_time=_WHEN + 1))
        self.assertEqual(first, same)
        self.assertNotEqual(first, later)
        self.assertEqual(later, formatEventAsClassicLogText(_event("x", log_time=_WHEN + 1)))

    def test_multiple_lines_indented(self) -> None:
        self.assertSameAsTwisted(_event("one\ntwo {x}", x="three\nfour"))

    def test_failure_traceback(self) -> None:
        failure = Failure(ZeroDivisionError("division by zero"))
        self.assertSameAsTwisted(_event("it broke: {why}", why="math", log_failure=failure))

    def test_real_logger_events(self) -> None:
        """Events as twisted.logger.Logger makes them, with its extra log_* keys."""
        events: list[Any] = []
        publisher = LogPublisher(events.append)  # type: ignore[arg-type]
        log = Logger(namespace="rail.smtp.inbound", observer=publisher)
        log.info("inbound accepted msg_id={msg_id} peer={peer}", msg_id="01X", peer="127.0.0.1")
        log.warn("webhook {status} for {msg_id}: {reply}", status="failed", msg_id="01X", reply="")
        for event in events:
            self.assertSameAsTwisted(event)
            self.assertIn("[rail.smtp.inbound#", str(classic_line(event)))


class TwistdObserverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.calls: list[Callable[[], object]] = []
        previous = signal.getsignal(signal.SIGUSR1)
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)

    def build(self, **options: Any) -> Any:
        return twistd_observer(options, self.calls.append)()

    def test_log_file_with_rotation_on_sigusr1(self) -> None:
        path = self.mktemp()
        observer = self.build(logfile=path, nodaemon=True)
        self.assertIsInstance(observer, FileLogObserver)
        observer(_event("to the file {x}", x=1))
        with open(path, encoding="utf-8") as written:
            self.assertEqual(written.read(), formatEventAsClassicLogText(_event("to the file 1")))
        handler = signal.getsignal(signal.SIGUSR1)
        assert callable(handler)
        handler(signal.SIGUSR1, None)
        self.assertEqual(len(self.calls), 1)
        self.calls[0]()
        observer(_event("after rotation"))
        with open(path + ".1", encoding="utf-8") as rotated:
            self.assertIn("to the file 1", rotated.read())
        with open(path, encoding="utf-8") as current:
            self.assertIn("after rotation", current.read())

    def test_existing_sigusr1_handler_kept(self) -> None:
        def mine(signum: int, frame: object) -> None:
            pass

        signal.signal(signal.SIGUSR1, mine)
        self.build(logfile=self.mktemp())
        self.assertIs(signal.getsignal(signal.SIGUSR1), mine)

    def test_stdout_with_nodaemon(self) -> None:
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        for options in ({"nodaemon": True}, {"nodaemon": True, "logfile": "-"}):
            self.build(**options)(_event("to stdout"))
        self.assertEqual(out.getvalue().count("to stdout\n"), 2)

    def test_daemon_cannot_log_to_stdout(self) -> None:
        with self.assertRaises(SystemExit) as raised:
            self.build(logfile="-", nodaemon=False)
        self.assertIn("Daemons cannot log to stdout", str(raised.exception))

    def test_default_file_for_daemons(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(directory)
        observer = self.build()
        self.assertIsInstance(observer, FileLogObserver)
        observer(_event("daemon line"))
        with open(os.path.join(directory, "twistd.log"), encoding="utf-8") as written:
            self.assertIn("daemon line", written.read())

    def test_syslog(self) -> None:
        observer = self.build(syslog=True, prefix="rail")
        self.assertIsInstance(observer, LegacyLogObserverWrapper)


class OptionsTests(SynchronousTestCase):
    def test_twistd_gets_rails_logger(self) -> None:
        from twisted.scripts.twistd import ServerOptions

        previous = signal.getsignal(signal.SIGUSR1)
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        options = ServerOptions()
        path = self.mktemp()
        options.parseOptions(["-n", "-l", path, "rail", "--config", "rail.yaml"])
        self.assertIs(options["logger"], twistd_logger)
        flushes: list[Callable[[], None]] = []
        self.patch(tap, "_schedule", lambda delay, f: flushes.append(f))
        twistd_logger()(_event("through twistd's options"))
        for flush in flushes:
            flush()
        with open(path, encoding="utf-8") as written:
            self.assertIn("through twistd's options", written.read())

    def test_operators_logger_kept(self) -> None:
        from twisted.scripts.twistd import ServerOptions

        options = ServerOptions()
        options.parseOptions(
            ["--logger", "twisted.logger.textFileLogObserver", "rail", "--config", "r.yaml"]
        )
        from twisted.logger import textFileLogObserver

        self.assertIs(options["logger"], textFileLogObserver)

    def test_standalone_options(self) -> None:
        options = Options()
        options.parseOptions(["--config", "rail.yaml"])
        self.assertIsNone(options.parent)

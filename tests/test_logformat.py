"""Structured lines (rail.logkv) and the JSON log format (rail.logjson)."""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Callable
from typing import Any

from twisted.logger import (
    Logger,
    LogLevel,
    LogPublisher,
    formatEvent,
    formatEventAsClassicLogText,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from rail import logjson, logtext, tap
from rail.logjson import json_line
from rail.logkv import emit, value_text
from rail.logtext import BufferedOutput, classic_line, twistd_observer
from rail.timefmt import rfc3339_or_none as rfc3339

_WHEN = 1_763_700_000.25  # 2025-11-21T04:40:00.25Z
_KEYS = ["time", "level", "namespace", "event", "text", "fields"]


def _emitted(kind: str, fields: dict[str, Any], level: LogLevel = LogLevel.info) -> Any:
    """The event ``emit`` makes, as a Logger hands it to observers."""
    events: list[Any] = []
    log = Logger(namespace="rail.delivery", observer=LogPublisher(events.append))  # type: ignore[arg-type]
    emit(log, kind, fields, level)
    (event,) = events
    event["log_time"] = _WHEN
    return event


class ValueTextTests(SynchronousTestCase):
    def test_plain_values_bare(self) -> None:
        """Values without spaces, quotes, ``=``, backslashes or controls are written as
        they are; None is ``-``, booleans ``true``/``false``, numbers as str() says."""
        self.assertEqual(
            [value_text(v) for v in ("a@b.example", "TLSv1.3", None, True, False, 2.5, 3)],
            ["a@b.example", "TLSv1.3", "-", "true", "false", "2.5", "3"],
        )

    def test_quoted_and_escaped(self) -> None:
        """A value with a space is quoted; quotes, backslashes and line breaks are
        escaped, so a remote reply can neither end the line nor forge a field."""
        self.assertEqual(value_text("250 2.0.0 ok"), '"250 2.0.0 ok"')
        self.assertEqual(value_text(""), '""')
        self.assertEqual(
            value_text('550 no\r\nresult=sent x="y" \\ \x00'),
            '"550 no\\r\\nresult=sent x=\\"y\\" \\\\ \\x00"',
        )
        self.assertEqual(value_text("a=b"), '"a=b"')
        self.assertEqual(value_text("x\u2028y"), '"x\\u2028y"')

    def test_rfc3339(self) -> None:
        """Times are RFC 3339 UTC to the second; None stays None."""
        self.assertEqual(rfc3339(_WHEN), "2025-11-21T04:40:00Z")
        self.assertIsNone(rfc3339(None))


class StructuredTextTests(SynchronousTestCase):
    def setUp(self) -> None:
        logtext._stamp[:] = [None, "-"]

    def test_text_line(self) -> None:
        """A structured event's text is its kind and fields as key=value, in order;
        Rail's text formatter and Twisted's give the same line."""
        event = _emitted("delivery.attempt", {"msg_id": "01X", "reply": "250 ok", "mx": None})
        self.assertEqual(formatEvent(event), 'delivery.attempt msg_id=01X reply="250 ok" mx=-')
        line = classic_line(event)
        self.assertIsNotNone(line)
        assert line is not None
        self.assertTrue(
            line.endswith(
                ' [rail.delivery#info] delivery.attempt msg_id=01X reply="250 ok" mx=-\n'
            ),
            line,
        )
        self.assertEqual(line, formatEventAsClassicLogText(event))


class JSONLineTests(SynchronousTestCase):
    def setUp(self) -> None:
        logjson._stamp[:] = [None, ""]

    def test_structured_event(self) -> None:
        """A structured event is one JSON object on one line with the stable keys in
        order: RFC 3339 UTC time to the millisecond, level, namespace, the line kind,
        the text and the fields with their JSON types."""
        event = _emitted(
            "delivery.final",
            {"msg_id": "01X", "rcpt": "a@b.example", "reply": 'x\n"y"', "attempts": 2, "tls": None},
            LogLevel.warn,
        )
        line = json_line(event)
        assert line is not None
        self.assertTrue(line.endswith("\n"))
        self.assertEqual(line.count("\n"), 1)
        record = json.loads(line)
        self.assertEqual(list(record), _KEYS)
        self.assertEqual(
            record,
            {
                "time": "2025-11-21T04:40:00.250Z",
                "level": "warn",
                "namespace": "rail.delivery",
                "event": "delivery.final",
                "text": 'delivery.final msg_id=01X rcpt=a@b.example reply="x\\n\\"y\\""'
                " attempts=2 tls=-",
                "fields": {
                    "msg_id": "01X",
                    "rcpt": "a@b.example",
                    "reply": 'x\n"y"',
                    "attempts": 2,
                    "tls": None,
                },
            },
        )

    def test_other_event(self) -> None:
        """Any other event has the same keys: ``event`` null, the formatted message as
        text, scalar fields only (objects, Twisted's keys and the legacy observer's keys
        are left out)."""
        event = {
            "log_format": "connection from {peer} ({obj})",
            "log_time": _WHEN,
            "log_namespace": "rail.smtp",
            "log_level": LogLevel.info,
            "peer": "127.0.0.1",
            "obj": object(),
            "system": "-",
            "isError": 0,
            "message": (),
        }
        record = json.loads(json_line(event) or "")
        self.assertEqual(list(record), _KEYS)
        self.assertIsNone(record["event"])
        self.assertTrue(record["text"].startswith("connection from 127.0.0.1 (<object"))
        self.assertEqual(record["fields"], {"peer": "127.0.0.1"})

    def test_failure_traceback(self) -> None:
        """An event with a failure adds its traceback under ``traceback``."""
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            failure = Failure()
        event = {
            "log_format": "it broke",
            "log_time": _WHEN,
            "log_namespace": "rail.test",
            "log_level": LogLevel.critical,
            "log_failure": failure,
        }
        record = json.loads(json_line(event) or "")
        self.assertEqual(list(record), [*_KEYS, "traceback"])
        self.assertIn("ZeroDivisionError", record["traceback"])

    def test_time_to_the_millisecond(self) -> None:
        """The time is rounded to the millisecond, carrying into the next second."""
        for when, text in (
            (1_796_117_403.214, "2026-12-01T09:30:03.214Z"),
            (1_796_117_403.9996, "2026-12-01T09:30:04.000Z"),
            (1_796_117_403.0, "2026-12-01T09:30:03.000Z"),
        ):
            event = {"log_format": "x", "log_time": when, "log_level": LogLevel.info}
            self.assertEqual(json.loads(json_line(event) or "")["time"], text)

    def test_empty_event_writes_nothing(self) -> None:
        """An event with no text and no failure writes no line, as twistd's text log."""
        self.assertIsNone(json_line({"log_time": _WHEN, "log_namespace": "x"}))

    def test_unicode_kept(self) -> None:
        """Non-ASCII text is written as UTF-8, not escaped."""
        event = _emitted("delivery.attempt", {"rcpt": "josé@exemple.fr"})
        self.assertIn("josé@exemple.fr", json_line(event) or "")


class JSONObserverTests(SynchronousTestCase):
    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGUSR1)
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)

    def test_file_gets_json_lines(self) -> None:
        """With the JSON formatter, twistd's log file gets one JSON object per line."""
        path = self.mktemp()
        observer = twistd_observer({"logfile": path}, lambda f: None, json_line)()
        observer(_emitted("delivery.attempt", {"msg_id": "01X"}))
        observer(_emitted("delivery.final", {"msg_id": "01X"}))
        with open(path, encoding="utf-8") as written:
            records = [json.loads(line) for line in written]
        self.assertEqual([r["event"] for r in records], ["delivery.attempt", "delivery.final"])

    def test_tap_picks_the_configured_format(self) -> None:
        """``twistd rail`` writes JSON lines once the configuration says
        ``logging.format: json`` (kept by makeService), text lines otherwise."""
        flushes: list[Callable[[], None]] = []
        self.patch(tap, "_schedule", lambda delay, f: flushes.append(f))
        lines = []
        for log_format in ("json", "text"):
            path = self.mktemp()
            self.patch(tap, "_twistd_options", [{"logfile": path}])
            self.patch(tap, "_log_format", [log_format])
            tap.twistd_logger()(_emitted("delivery.attempt", {"msg_id": "01X"}))
            self.assertEqual(len(flushes), 1)  # the line waits for its batch
            flushes.pop()()
            with open(path, encoding="utf-8") as written:
                lines.extend(written.read().splitlines())
        first, second = lines
        self.assertEqual(json.loads(first)["fields"], {"msg_id": "01X"})
        self.assertTrue(second.endswith("[rail.delivery#info] delivery.attempt msg_id=01X"))


class BufferedOutputTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.out = io.StringIO()
        self.scheduled: list[tuple[float, Callable[[], None]]] = []
        self.buffered = BufferedOutput(
            self.out, lambda delay, f: self.scheduled.append((delay, f)), limit=100
        )

    def test_waiting_lines_written_in_a_batch(self) -> None:
        """Lines with ``wait`` are written together when the flush scheduled 0.1 s after
        the first runs, in order; one flush is scheduled per batch."""
        self.buffered.write("one\n", wait=True)
        self.buffered.write("two\n", wait=True)
        self.assertEqual(self.out.getvalue(), "")
        self.assertEqual([delay for delay, _ in self.scheduled], [0.1])
        self.scheduled.pop()[1]()
        self.assertEqual(self.out.getvalue(), "one\ntwo\n")
        self.buffered.write("three\n", wait=True)
        self.assertEqual(len(self.scheduled), 1)

    def test_other_line_written_at_once_after_the_batch(self) -> None:
        """A line without ``wait`` (an error, a shutdown line) is written at once, after
        what waits."""
        self.buffered.write("attempt\n", wait=True)
        self.buffered.write("stopped\n")
        self.assertEqual(self.out.getvalue(), "attempt\nstopped\n")

    def test_full_batch_written_at_once(self) -> None:
        """Once ``limit`` characters wait they are written without waiting."""
        self.buffered.write("x" * 60, wait=True)
        self.buffered.write("y" * 60, wait=True)
        self.assertEqual(self.out.getvalue(), "x" * 60 + "y" * 60)
        self.scheduled.pop()[1]()  # the timer finds nothing left
        self.assertEqual(len(self.out.getvalue()), 120)

    def test_observer_batches_only_structured_lines(self) -> None:
        """Through twistd's observer, a delivery line waits and a plain line does not."""
        previous = signal.getsignal(signal.SIGUSR1)
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        path = self.mktemp()
        calls: list[Callable[[], object]] = []
        flushes: list[Callable[[], None]] = []
        observer = twistd_observer(
            {"logfile": path}, calls.append, classic_line, lambda d, f: flushes.append(f)
        )()
        observer(_emitted("delivery.attempt", {"msg_id": "01X"}))
        with open(path, encoding="utf-8") as written:
            self.assertEqual(written.read(), "")
        handler = signal.getsignal(signal.SIGUSR1)
        assert callable(handler)
        handler(signal.SIGUSR1, None)
        calls[0]()
        with open(path + ".1", encoding="utf-8") as rotated:
            self.assertIn("msg_id=01X", rotated.read())  # flushed before the rotation
        observer(_emitted("delivery.attempt", {"msg_id": "01Y"}))
        observer({"log_format": "rail stopped", "log_time": _WHEN, "log_namespace": "rail"})
        with open(path, encoding="utf-8") as written:
            lines = written.read().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn("msg_id=01Y", lines[0])
        self.assertTrue(lines[1].endswith("rail stopped"))

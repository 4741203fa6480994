"""rail.logtext.tagged: a worker's log lines name the worker, in text and in JSON."""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from rail import logtext
from rail.logjson import json_line
from rail.logtext import classic_line, tagged


def _event(**fields: Any) -> dict[str, Any]:
    return {
        "log_format": "accepted id={msg_id}",
        "log_time": 1_763_700_000.25,
        "log_namespace": "rail.audit",
        "log_level": LogLevel.info,
        "msg_id": "01A",
        **fields,
    }


class TaggedTests(SynchronousTestCase):
    def setUp(self) -> None:
        logtext._stamp[:] = [None, "-"]

    def test_text(self) -> None:
        """A text line shows the worker after the namespace and level."""
        line = tagged(classic_line, 1)(_event())
        self.assertEqual(line, "2025-11-21T04:40:00+0000 [rail.audit#info w1] accepted id=01A\n")

    def test_text_with_a_system(self) -> None:
        """A line of Twisted's with a system of its own keeps it, tagged."""
        line = tagged(classic_line, 0)(_event(log_system="-"))
        assert line is not None
        self.assertIn(" [- w0] ", line)

    def test_json(self) -> None:
        """A JSON line carries the worker as a number in ``worker``."""
        line = tagged(json_line, 2)(_event())
        record = json.loads(line or "")
        self.assertEqual(record["worker"], 2)
        self.assertEqual(record["namespace"], "rail.audit")

    def test_single_process_untouched(self) -> None:
        """Without workers, JSON lines have no ``worker`` key."""
        self.assertNotIn("worker", json.loads(json_line(_event()) or ""))

"""rail.workers.service: the workers' command and where their log lines go."""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.workers.service import log_route, worker_argv


class LogRouteTests(SynchronousTestCase):
    def test_standard_output_shared(self) -> None:
        """``-n`` without a file (systemd's journal) and ``-l -``: the workers write to
        the parent's own standard output and error."""
        for options in ({"nodaemon": True}, {"nodaemon": True, "logfile": "-"}):
            self.assertEqual(log_route(options), {1: 1, 2: 2})

    def test_syslog_shared(self) -> None:
        """With syslog each worker logs there itself."""
        self.assertEqual(log_route({"syslog": True}), {1: 1, 2: 2})

    def test_file_relayed(self) -> None:
        """A log file (``-l FILE``, or twistd.log when daemonised) has one writer, the
        parent: the workers' output comes to it through pipes."""
        self.assertEqual(log_route({"nodaemon": True, "logfile": "rail.log"}), {1: "r", 2: "r"})
        self.assertEqual(log_route({}), {1: "r", 2: "r"})


class WorkerArgvTests(SynchronousTestCase):
    def test_foreground_to_standard_output(self) -> None:
        """A worker is this Python's twistd in the foreground, without a pid file,
        logging to standard output, on the configuration's absolute path."""
        argv = worker_argv(Path("rail.yaml"), {"nodaemon": True})
        self.assertEqual(argv[0], sys.executable)
        self.assertEqual(argv[3:6], ["--nodaemon", "--pidfile=", "--logfile=-"])
        self.assertEqual(argv[-3:], ["rail", "--config", str(Path("rail.yaml").resolve())])

    def test_syslog(self) -> None:
        """With the parent on syslog, so are the workers, under its prefix."""
        argv = worker_argv(Path("/etc/rail.yaml"), {"syslog": True, "prefix": "mail"})
        self.assertIn("--syslog", argv)
        self.assertEqual(argv[argv.index("--prefix") + 1], "mail")
        self.assertNotIn("--logfile=-", argv)

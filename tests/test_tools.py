"""tests/support/tools.py: a missing tool skips a test, except under CI=true."""

from __future__ import annotations

import os

from twisted.trial.unittest import FailTest, SkipTest, SynchronousTestCase

from tests.support.tools import in_ci, missing, need_tool


class MissingToolTests(SynchronousTestCase):
    def ci(self, value: str | None) -> None:
        """Set (or, with ``None``, remove) $CI for this test."""
        before = os.environ.get("CI")
        if value is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = value

        def restore() -> None:
            if before is None:
                os.environ.pop("CI", None)
            else:
                os.environ["CI"] = before

        self.addCleanup(restore)

    def test_skips_outside_ci(self) -> None:
        """Without CI=true a missing tool skips the test, with the reason."""
        for value in (None, "", "false", "0"):
            self.ci(value)
            self.assertFalse(in_ci(), value)
            with self.assertRaises(SkipTest) as caught:
                missing("pebble is not installed")
            self.assertEqual(str(caught.exception), "pebble is not installed")

    def test_fails_under_ci(self) -> None:
        """Under CI=true (as .ci/run sets, or "1"/"yes") the same test fails instead."""
        for value in ("true", "TRUE", "1", "yes"):
            self.ci(value)
            self.assertTrue(in_ci(), value)
            with self.assertRaises(FailTest) as caught:
                missing("pebble is not installed")
            self.assertIn("pebble is not installed", str(caught.exception))
            self.assertIn("CI=true", str(caught.exception))

    def test_need_tool(self) -> None:
        """need_tool returns the command's path, and names the Debian package when it is
        missing."""
        self.ci(None)
        self.assertTrue(need_tool("sh", "dash").endswith("/sh"))
        with self.assertRaises(SkipTest) as caught:
            need_tool("no-such-command-rail", "rail-tools")
        self.assertEqual(
            str(caught.exception),
            "no-such-command-rail is not installed (Debian package rail-tools)",
        )

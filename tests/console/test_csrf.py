"""The console's CSRF tokens and its SVG charts (pure)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.template import flattenString

from rail.console.charts import bar_chart, bucket
from rail.console.csrf import csrf_token, csrf_valid

_SECRET = b"s" * 32


class CSRFTests(SynchronousTestCase):
    def test_token_binds_certificate_path_and_secret(self) -> None:
        """A token is valid for its certificate fingerprint and form path only, under
        the secret that made it; empty or missing tokens are invalid."""
        token = csrf_token(_SECRET, "aa", "/console/messages/X/retry")
        self.assertTrue(csrf_valid(_SECRET, "aa", "/console/messages/X/retry", token))
        self.assertFalse(csrf_valid(_SECRET, "bb", "/console/messages/X/retry", token))
        self.assertFalse(csrf_valid(_SECRET, "aa", "/console/messages/X/delete", token))
        self.assertFalse(csrf_valid(b"t" * 32, "aa", "/console/messages/X/retry", token))
        self.assertFalse(csrf_valid(_SECRET, "aa", "/console/messages/X/retry", ""))
        self.assertFalse(csrf_valid(_SECRET, "aa", "/console/messages/X/retry", None))


class ChartTests(SynchronousTestCase):
    def test_bucket(self) -> None:
        """Pairs are summed into fixed buckets; seconds outside the range are ignored."""
        self.assertEqual(bucket([(0, 1), (9, 2), (10, 4), (29, 8), (30, 16)], 0, 30, 10), [3, 4, 8])

    def test_chart_is_escaped_svg(self) -> None:
        """The chart is an SVG with an accessible name; one bar per value, scaled to
        the peak, and its labels escaped by the template engine."""
        out: list[bytes] = []
        flattenString(None, bar_chart([0, 5, 10], "a <b>", "c & d")).addCallback(out.append)
        [html] = out
        self.assertIn(b'role="img"', html)
        self.assertIn(b'aria-label="a &lt;b&gt;"', html)
        self.assertIn(b"<desc>c &amp; d</desc>", html)
        self.assertEqual(html.count(b"<rect"), 3)
        self.assertIn(b'height="110.0"', html)

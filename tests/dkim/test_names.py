"""Domain names as DKIM stores and signs them."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.dkim.names import a_label


class ALabelTests(SynchronousTestCase):
    def test_normalised(self) -> None:
        """Case and a root dot are dropped; U-labels become A-labels."""
        self.assertEqual(a_label("Example.COM."), "example.com")
        self.assertEqual(a_label("Bücher.Example"), "xn--bcher-kva.example")
        self.assertEqual(a_label("xn--bcher-kva.example"), "xn--bcher-kva.example")
        self.assertEqual(a_label("localhost"), "localhost")

    def test_refused(self) -> None:
        """Names that cannot be a directory or a d= value are None."""
        for name in ("", ".", "a..b", "-a.example", "a_b.example", "a/b", "..", "a b.c",
                     "x" * 64 + ".example", "[1.2.3.4]"):  # fmt: skip
            self.assertIsNone(a_label(name), name)

"""SRS rewriting and reversal: the format, the hash and the age, with a Clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.forward.srs import MAX_AGE_DAYS, SRS, SRSError, is_srs

DAY = 86400.0
SECRET = b"0123456789abcdef0123456789abcdef"


class SRSTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_790_000_000)
        self.srs = SRS(SECRET)

    def forward(self, sender: str, domain: str = "rail.test") -> str:
        return self.srs.forward(sender, domain, self.clock.seconds())

    def reverse(self, address: str) -> str:
        return self.srs.reverse(address, self.clock.seconds())

    def test_srs0_shape(self) -> None:
        """SRS0=HHHH=TT=domain=local@forwarder: four hash characters, a two-character
        base32 day stamp, then the original domain and local part."""
        address = self.forward("alice@sender.example")
        local, _, domain = address.rpartition("@")
        self.assertEqual(domain, "rail.test")
        kind, hashed, stamp, original_domain, original_local = local.split("=")
        self.assertEqual(kind, "SRS0")
        self.assertEqual(len(hashed), 4)
        self.assertEqual(len(stamp), 2)
        self.assertEqual((original_domain, original_local), ("sender.example", "alice"))
        self.assertTrue(is_srs(local))

    def test_round_trip(self) -> None:
        """Reversing a fresh SRS0 address gives the original sender back."""
        self.assertEqual(self.reverse(self.forward("alice@sender.example")), "alice@sender.example")

    def test_case_changed_by_a_relay(self) -> None:
        """A relay that upper-cases the address does not break the hash check."""
        address = self.forward("alice@sender.example")
        self.assertEqual(self.reverse(address.upper()).lower(), "alice@sender.example")

    def test_null_sender_stays_null(self) -> None:
        """Bounces are forwarded with the null sender: nothing to rewrite."""
        self.assertEqual(self.forward(""), "")

    def test_own_domain_kept(self) -> None:
        """A sender already in the forwarding domain is not rewritten."""
        self.assertEqual(self.forward("ops@rail.test"), "ops@rail.test")

    def test_bad_hash(self) -> None:
        """A changed hash, or a changed original address under the same hash, is
        refused: a forged bounce cannot use Rail to reach anyone."""
        address = self.forward("alice@sender.example")
        local, _, domain = address.rpartition("@")
        parts = local.split("=")
        forged_hash = "=".join([parts[0], "AAAA" if parts[1] != "AAAA" else "BBBB", *parts[2:]])
        forged_target = "=".join([*parts[:4], "victim"])
        for forged in (forged_hash, forged_target):
            with self.assertRaises(SRSError) as caught:
                self.reverse(f"{forged}@{domain}")
            self.assertEqual(str(caught.exception), "bad hash")

    def test_other_secret(self) -> None:
        """An address made under another secret fails the hash check."""
        address = SRS(b"another secret, sixteen bytes+").forward(
            "alice@sender.example", "rail.test", self.clock.seconds()
        )
        with self.assertRaises(SRSError):
            self.reverse(address)

    def test_age(self) -> None:
        """An address is good for MAX_AGE_DAYS days and refused after."""
        address = self.forward("alice@sender.example")
        self.clock.advance(MAX_AGE_DAYS * DAY)
        self.assertEqual(self.reverse(address), "alice@sender.example")
        self.clock.advance(DAY)
        with self.assertRaises(SRSError) as caught:
            self.reverse(address)
        self.assertEqual(str(caught.exception), "too old")

    def test_stamp_from_the_future(self) -> None:
        """A day stamp ahead of today reads as very old (the stamp wraps every 1024
        days), so it is refused."""
        self.clock.advance(3 * DAY)
        address = self.forward("alice@sender.example")
        self.clock.advance(-3 * DAY)
        with self.assertRaises(SRSError):
            self.reverse(address)

    def test_srs1_wraps_srs0(self) -> None:
        """Forwarding mail whose sender is another forwarder's SRS0 address makes an
        SRS1 address; reversing it gives that SRS0 address back, at its forwarder."""
        first = SRS(b"first forwarder's secret value!!").forward(
            "alice@sender.example", "first.example", self.clock.seconds()
        )
        second = self.forward(first)
        self.assertTrue(second.startswith("SRS1="))
        self.assertIn("=first.example==", second)
        self.assertEqual(self.reverse(second), first)

    def test_srs1_forwarded_again(self) -> None:
        """An SRS1 sender forwarded again keeps pointing at the first forwarder."""
        first = SRS(b"first forwarder's secret value!!").forward(
            "alice@sender.example", "first.example", self.clock.seconds()
        )
        second = SRS(b"second forwarder's secret value!").forward(
            first, "second.example", self.clock.seconds()
        )
        third = self.forward(second)
        self.assertEqual(self.reverse(third), first)

    def test_malformed(self) -> None:
        """Addresses with the SRS prefix but not its shape are refused, not crashed on."""
        for address in (
            "SRS0=abcd@rail.test",
            "SRS0=abcd=ZZ@rail.test",
            "SRS0=abcd=!!=x.example=a@rail.test",
            "SRS1=abcd@rail.test",
            "plain@rail.test",
        ):
            with self.assertRaises(SRSError, msg=address):
                self.reverse(address)

"""``delivery.dane``, ``delivery.dane_resolver`` and the ``tlsrpt`` section."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.config import parse_config
from tests.config.test_parse import BASE, _minimal, _problems


class DaneConfigTests(SynchronousTestCase):
    def test_off_by_default(self) -> None:
        """Without settings DANE is off and no resolver is named."""
        delivery = parse_config(_minimal(), BASE).delivery
        self.assertEqual((delivery.dane, delivery.dane_resolver), (False, None))

    def test_on_with_a_loopback_resolver(self) -> None:
        """``dane: true`` with a loopback resolver (port optional) is accepted."""
        for text, expected in (("127.0.0.1", ("127.0.0.1", 53)), ("[::1]:5353", ("::1", 5353))):
            config = parse_config(_minimal(delivery={"dane": True, "dane_resolver": text}), BASE)
            self.assertEqual(
                (config.delivery.dane, config.delivery.dane_resolver), (True, expected)
            )

    def test_needs_a_resolver_on_loopback(self) -> None:
        """DANE without a resolver, or with one off the host, is refused with the reason."""
        (missing,) = _problems(_minimal(delivery={"dane": True}))
        self.assertEqual(
            missing,
            "delivery: dane: true needs dane_resolver (a DNSSEC-validating resolver on loopback)",
        )
        (remote,) = _problems(_minimal(delivery={"dane": True, "dane_resolver": "192.0.2.53"}))
        self.assertIn("192.0.2.53 is not a loopback address", remote)
        (kind,) = _problems(_minimal(delivery={"dane": "yes"}))
        self.assertTrue(kind.startswith("delivery.dane: "), kind)


class TLSRPTConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """TLS-RPT is off by default; names default to null (derived from hostname)."""
        tlsrpt = parse_config(_minimal(), BASE).tlsrpt
        self.assertEqual(
            (tlsrpt.enabled, tlsrpt.organization, tlsrpt.contact, tlsrpt.sender),
            (False, None, None, None),
        )

    def test_values_and_problems(self) -> None:
        """Values are read as written; a bad sender, an over-long organization and an
        unknown key are each reported at their path."""
        config = parse_config(
            _minimal(
                tlsrpt={
                    "enabled": True,
                    "organization": "Example Org",
                    "contact": "mailto:tls@example.org",
                    "sender": "tlsrpt@example.org",
                }
            ),
            BASE,
        )
        self.assertEqual(config.tlsrpt.organization, "Example Org")
        self.assertEqual(config.tlsrpt.sender, "tlsrpt@example.org")
        problems = _problems(
            _minimal(tlsrpt={"sender": "nobody", "organization": "x" * 201, "rua": 1})
        )
        self.assertEqual(
            sorted(p.split(":")[0] for p in problems),
            ["tlsrpt.organization", "tlsrpt.rua", "tlsrpt.sender"],
        )


class AllowPrivateConfigTests(SynchronousTestCase):
    def test_off_by_default_and_read(self) -> None:
        """delivery.mta_sts.allow_private and tlsrpt.allow_private are off unless set
        (recipient domains must not aim Rail at internal hosts); a non-boolean is
        reported at its path."""
        config = parse_config(_minimal(), BASE)
        self.assertEqual(
            (config.delivery.mta_sts.allow_private, config.tlsrpt.allow_private),
            (False, False),
        )
        config = parse_config(
            _minimal(
                delivery={"mta_sts": {"allow_private": True}},
                tlsrpt={"allow_private": True},
            ),
            BASE,
        )
        self.assertEqual(
            (config.delivery.mta_sts.allow_private, config.tlsrpt.allow_private),
            (True, True),
        )
        problems = _problems(
            _minimal(delivery={"mta_sts": {"allow_private": "yes"}}, tlsrpt={"allow_private": 1})
        )
        self.assertEqual(
            sorted(p.split(":")[0] for p in problems),
            ["delivery.mta_sts.allow_private", "tlsrpt.allow_private"],
        )

"""Table tests for the ACME renewal decisions (rail.acme.decide)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.acme.decide import (
    BACKOFF_MAX,
    CHECK_INTERVAL,
    backoff_delay,
    certificate_names,
    next_check_delay,
    renewal_reason,
)
from tests.acme.helpers import DAY, NOW, leaf

_RENEW_BEFORE = 30 * DAY
_NAMES = ("mail.rail.test", "mta-sts.rail.test")


class RenewalReasonTests(SynchronousTestCase):
    def test_table(self) -> None:
        """A certificate is ordered when there is none, when it lacks a wanted name, or
        when it expires within renew_before; otherwise nothing is to be done."""
        both = leaf(_NAMES, not_after=NOW + 60 * DAY)
        cases = [
            (None, "no ACME certificate yet"),
            (both, None),
            (leaf(_NAMES, not_after=NOW + 30 * DAY + 1), None),
            (
                leaf(_NAMES, not_after=NOW + 30 * DAY),
                "the certificate expires at 2027-02-14T08:00:00Z",
            ),
            (
                leaf(_NAMES, not_after=NOW - DAY),
                "the certificate expires at 2027-01-14T08:00:00Z",
            ),
            (
                leaf(("mail.rail.test",), not_after=NOW + 60 * DAY),
                "the certificate does not cover mta-sts.rail.test",
            ),
        ]
        for certificate, expected in cases:
            self.assertEqual(
                renewal_reason(certificate, _NAMES, NOW, _RENEW_BEFORE), expected, expected
            )

    def test_names_compared_case_insensitively(self) -> None:
        """Names differing only in case count as covered."""
        certificate = leaf(("Mail.Rail.Test", "MTA-STS.rail.test"), not_after=NOW + 60 * DAY)
        self.assertIsNone(renewal_reason(certificate, _NAMES, NOW, _RENEW_BEFORE))
        self.assertEqual(certificate_names(certificate), frozenset(_NAMES))

    def test_extra_names_are_fine(self) -> None:
        """A certificate with more names than wanted (a domain was removed) is kept."""
        certificate = leaf((*_NAMES, "mta-sts.old.test"), not_after=NOW + 60 * DAY)
        self.assertIsNone(renewal_reason(certificate, _NAMES, NOW, _RENEW_BEFORE))


class NextCheckTests(SynchronousTestCase):
    def test_table(self) -> None:
        """The next look is a day away, or sooner when the renewal window opens first,
        never in the past."""
        cases = [
            (NOW + 90 * DAY, CHECK_INTERVAL),
            (NOW + 31 * DAY, CHECK_INTERVAL),
            (NOW + 30.5 * DAY, 0.5 * DAY),
            (NOW + 30 * DAY + 10, 10.0),
            (NOW + 30 * DAY, 0.0),
            (NOW + DAY, 0.0),
        ]
        for not_after, expected in cases:
            certificate = leaf(_NAMES, not_after=not_after)
            self.assertEqual(next_check_delay(certificate, NOW, _RENEW_BEFORE), expected)


class BackoffTests(SynchronousTestCase):
    def test_doubling_and_cap(self) -> None:
        """One minute after the first failure, doubling each time, capped at one day."""
        cases = [
            (1, 60.0),
            (2, 120.0),
            (3, 240.0),
            (5, 960.0),
            (11, 61440.0),
            (12, BACKOFF_MAX),
            (13, BACKOFF_MAX),
            (1000, BACKOFF_MAX),
        ]
        for failures, expected in cases:
            self.assertEqual(backoff_delay(failures, 0.0), expected, failures)

    def test_jitter_shortens_by_up_to_a_quarter(self) -> None:
        """Jitter j in [0, 1) takes j/4 off the delay, so the cap is never exceeded."""
        cases = [
            (1, 0.5, 52.5),
            (2, 0.2, 114.0),
            (20, 0.5, 0.875 * BACKOFF_MAX),
            (20, 0.999, BACKOFF_MAX * (1 - 0.25 * 0.999)),
        ]
        for failures, jitter, expected in cases:
            self.assertAlmostEqual(backoff_delay(failures, jitter), expected)

    def test_bad_arguments(self) -> None:
        """Zero failures or jitter outside [0, 1) are programming errors."""
        self.assertRaises(ValueError, backoff_delay, 0, 0.0)
        self.assertRaises(ValueError, backoff_delay, 1, 1.0)
        self.assertRaises(ValueError, backoff_delay, 1, -0.1)

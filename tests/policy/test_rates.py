"""Per-client rate limits: sliding windows of buckets on a Clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.config.schema import ClientLimits
from rail.policy.rates import ClientRates, Limited

NOW = 1_789_999_200.0  # a multiple of 900 s: every window's bucket edges line up


def _rates(clock: Clock, **limits: int | None) -> ClientRates:
    return ClientRates(clock, lambda client: ClientLimits(**limits))


class WindowTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def test_no_limits_never_refuse(self) -> None:
        """With every limit null, any number of messages passes."""
        rates = _rates(self.clock)
        for _ in range(1000):
            rates.record("app", 50)
        self.assertIsNone(rates.check_message("app", 50))
        self.assertIsNone(rates.check_recipients("app", 10_000))

    def test_minute_limit_and_retry_after(self) -> None:
        """The limit-th message passes, the next is refused with the seconds until the
        oldest messages' five-second bucket leaves the minute; then it passes."""
        rates = _rates(self.clock, messages_per_minute=3)
        rates.record("app", 1)
        self.clock.advance(10)
        rates.record("app", 1)
        self.assertIsNone(rates.check_message("app"))
        rates.record("app", 1)
        refused = rates.check_message("app")
        self.assertEqual(refused, Limited("messages_per_minute", 50))
        self.clock.advance(49)
        self.assertIsNotNone(rates.check_message("app"))
        self.clock.advance(1)
        self.assertIsNone(rates.check_message("app"))

    def test_forget_takes_back_what_record_counted(self) -> None:
        """A message taken back no longer counts in any window; one taken back after its
        bucket left a window takes nothing from that window (never below what is
        left), and still from the windows that count it."""
        rates = _rates(self.clock, messages_per_minute=1, messages_per_hour=2)
        rates.record("app", 3)
        self.assertIsNotNone(rates.check_message("app"))
        rates.forget("app", 3, NOW)
        self.assertIsNone(rates.check_message("app"))
        rates.record("app", 1)
        self.clock.advance(61)  # the minute forgot it; the hour did not
        rates.record("app", 1)
        self.assertIsNotNone(rates.check_message("app"))  # two in the hour
        rates.forget("app", 1, NOW)
        self.assertIsNotNone(rates.check_message("app"))  # the minute's one is the second
        self.clock.advance(60)
        self.assertIsNone(rates.check_message("app"))  # one left in the hour
        rates.forget("nobody", 1, NOW)  # a client never counted: nothing happens

    def test_clients_are_counted_apart(self) -> None:
        """One client's mail does not count against another's limit."""
        rates = _rates(self.clock, messages_per_minute=1)
        rates.record("app", 1)
        self.assertIsNotNone(rates.check_message("app"))
        self.assertIsNone(rates.check_message("other"))

    def test_hour_and_day(self) -> None:
        """The hour window frees after an hour, the day window only after a day."""
        rates = _rates(self.clock, messages_per_hour=2, messages_per_day=3)
        rates.record("app", 1)
        rates.record("app", 1)
        self.assertEqual(rates.check_message("app"), Limited("messages_per_hour", 3600))
        self.clock.advance(3600)
        self.assertIsNone(rates.check_message("app"))
        rates.record("app", 1)
        self.assertEqual(rates.check_message("app"), Limited("messages_per_day", 86400 - 3600))
        self.clock.advance(86400 - 3600)
        self.assertIsNone(rates.check_message("app"))

    def test_recipients_per_day(self) -> None:
        """Recipients count by their number; a check names how many more are wanted, and
        asking for more than the whole limit waits a whole day."""
        rates = _rates(self.clock, recipients_per_day=10)
        rates.record("app", 8)
        self.assertIsNone(rates.check_recipients("app", 2))
        self.assertEqual(rates.check_recipients("app", 3), Limited("recipients_per_day", 86400))
        self.assertEqual(rates.check_message("app", 3), Limited("recipients_per_day", 86400))
        self.assertIsNone(rates.check_message("app"))
        self.assertEqual(rates.check_recipients("other", 11).retry_after, 86400)  # type: ignore[union-attr]

    def test_zero_refuses_everything(self) -> None:
        """A limit of 0 refuses every message of the client."""
        rates = _rates(self.clock, messages_per_day=0)
        self.assertEqual(rates.check_message("app"), Limited("messages_per_day", 86400))

    def test_seed_counts_the_last_day(self) -> None:
        """Seeded rows count in every window they fall in; rows older than a day, none."""
        rates = _rates(self.clock, messages_per_minute=5, messages_per_day=11)
        rates.record("app", 1)  # a live count made before the seed arrived
        rates.seed(
            [
                ("app", NOW - 90_000, 100, 100),  # over a day old
                ("app", NOW - 7200, 6, 6),
                ("app", NOW, 4, 4),  # this minute
            ]
        )
        self.assertEqual(rates.check_message("app"), Limited("messages_per_minute", 60))
        self.clock.advance(60)
        self.assertEqual(rates.check_message("app"), Limited("messages_per_day", 86400 - 7200 - 60))

    def test_reconfigure_keeps_counts(self) -> None:
        """New limits (SIGHUP) apply at once to the counts made so far."""
        rates = _rates(self.clock)
        rates.record("app", 1)
        rates.record("app", 1)
        rates.reconfigure(lambda client: ClientLimits(messages_per_hour=2))
        self.assertEqual(rates.check_message("app"), Limited("messages_per_hour", 3600))

    def test_text(self) -> None:
        """The refusal text names the limit and the wait."""
        self.assertEqual(
            Limited("recipients_per_day", 7).text,
            "recipient rate limit (recipients_per_day) reached; try again in 7s",
        )


class MergeOthersTests(SynchronousTestCase):
    """The other nodes' running totals, merged as deltas (a shared database)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def test_totals_add_their_growth_once(self) -> None:
        """A row read again unchanged adds nothing; a row that grew adds the difference;
        rows of two nodes for one bucket both count."""
        rates = _rates(self.clock, messages_per_minute=10)
        since = NOW - 15
        self.assertEqual(rates.merge_others([("app", NOW, "b", 3, 3)], since), 3)
        self.assertEqual(rates.merge_others([("app", NOW, "b", 3, 3)], since), 0)
        self.assertEqual(
            rates.merge_others([("app", NOW, "b", 5, 5), ("app", NOW, "c", 4, 4)], since), 6
        )
        rates.record("app", 1)  # this node's own: 9 + 1 = 10
        self.assertEqual(rates.check_message("app"), Limited("messages_per_minute", 60))

    def test_counts_in_the_rows_bucket(self) -> None:
        """Another node's messages leave the minute window when their bucket does, not
        a minute after they were merged."""
        rates = _rates(self.clock, messages_per_minute=2)
        self.clock.advance(3)
        rates.merge_others([("app", NOW - 20, "b", 2, 2)], NOW - 30)
        self.assertEqual(rates.check_message("app"), Limited("messages_per_minute", 37))
        self.clock.advance(37)
        self.assertIsNone(rates.check_message("app"))

    def test_recipients_count_per_day(self) -> None:
        """Recipients merged count against recipients per day, messages against the
        message windows."""
        rates = _rates(self.clock, recipients_per_day=10, messages_per_hour=100)
        rates.merge_others([("app", NOW, "b", 1, 9)], NOW - 15)
        self.assertIsNone(rates.check_recipients("app", 1))
        self.assertEqual(rates.check_recipients("app", 2), Limited("recipients_per_day", 86400))

    def test_forgets_buckets_before_since(self) -> None:
        """Totals of buckets before ``since`` are forgotten (memory stays bounded by what
        one poll reads); what they added stays counted."""
        rates = _rates(self.clock, messages_per_hour=100)
        rates.merge_others([("app", NOW - 30, "b", 4, 4), ("app", NOW, "b", 1, 1)], NOW - 60)
        self.clock.advance(30)
        rates.merge_others([("app", NOW, "b", 1, 1)], NOW - 10)
        self.assertEqual(len(rates._merged), 1)
        self.assertEqual(rates.check_message("app"), None)
        rates.reconfigure(lambda client: ClientLimits(messages_per_hour=5))
        self.assertIsNotNone(rates.check_message("app"))

    def test_rows_older_than_a_day_count_for_nothing(self) -> None:
        """A row whose bucket is a day old adds nothing (retention deletes it soon)."""
        rates = _rates(self.clock, messages_per_day=1)
        self.assertEqual(rates.merge_others([("app", NOW - 86400, "b", 5, 5)], NOW - 86400), 0)
        self.assertIsNone(rates.check_message("app"))

    def test_a_clock_ahead_expires_nothing_early(self) -> None:
        """A row from a node whose clock runs 50 s ahead counts as of now, and does not
        push this node's own recent counts out of the minute."""
        rates = _rates(self.clock, messages_per_minute=3)
        rates.record("app", 1)
        self.clock.advance(20)
        rates.record("app", 1)
        rates.merge_others([("app", NOW + 70, "b", 1, 1)], NOW)
        self.assertEqual(rates.check_message("app"), Limited("messages_per_minute", 40))

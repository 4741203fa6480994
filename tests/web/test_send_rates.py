"""``POST /api/v1/send`` and the per-client rate limits: 429 RATE_LIMITED, Retry-After."""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource

from rail.config.schema import ClientLimits
from rail.policy.rates import ClientRates
from rail.refusals import Refusals
from rail.web.send import Send
from rail.web.site import RailSite
from tests.web.test_send import HOSTNAME, NOW, APITestCase, document


class SendRateTests(APITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.limits: dict[str, ClientLimits] = {"myapp": ClientLimits(messages_per_hour=2)}
        self.rates = ClientRates(self.clock, lambda c: self.limits.get(c, ClientLimits()))
        self.refusals = Refusals(self.clock)
        self.accepted: list[tuple[float, int]] = []

    def site(self) -> RailSite:
        v1 = Resource()
        send: Any = Send(
            self.store,
            self.clock,
            hostname=HOSTNAME,
            max_message_size=self.max_message_size,
            max_recipients=self.max_recipients,
            refusals=self.refusals,
            rates=self.rates,
            count_accepted=lambda now, count: self.accepted.append((now, count)),
        )
        v1.putChild(b"send", send)
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        return RailSite(root, max_body=4 * 1024 * 1024, idle_timeout=60.0, clock=self.clock)

    def test_over_the_limit_is_429(self) -> None:
        """Messages within the limit are 202; the next is 429 RATE_LIMITED (reason phrase
        ``Too Many Requests``, which Twisted does not know) with Retry-After in seconds,
        nothing stored, a refusal counted; another client is not
        affected; after the wait, 202 again."""
        for _ in range(2):
            self.assertEqual(self.post(document()).status, 202)
        self.clock.advance(600)
        response = self.post(document())
        self.assertEqual(response.error(), (429, "RATE_LIMITED"))
        self.assertEqual(response.reason, "Too Many Requests")
        self.assertEqual(response.headers["retry-after"], "3000")
        self.assertEqual(
            response.json()["error"]["message"],
            "message rate limit (messages_per_hour) reached; try again in 3000s",
        )
        self.assertEqual(len(self.store.messages), 2)
        self.assertEqual(self.refusals.counts, {("https", "messages_per_hour"): 1})
        other = self.post(
            document(**{"from": "other@ataca.io"}), certificate=self.other_certificate
        )
        self.assertEqual(other.status, 202)
        self.clock.advance(3000)
        self.assertEqual(self.post(document()).status, 202)

    def test_recipients_count_per_message(self) -> None:
        """Recipients per day counts every recipient of a message (to, cc and bcc): a
        message that would pass the limit is refused whole."""
        self.limits["myapp"] = ClientLimits(recipients_per_day=3)
        self.assertEqual(self.post(document()).status, 202)  # two recipients
        response = self.post(document())
        self.assertEqual(response.error(), (429, "RATE_LIMITED"))
        self.assertEqual(response.reason, "Too Many Requests")
        self.assertEqual(self.post(document(cc=[])).status, 202)

    def test_replay_does_not_count(self) -> None:
        """Replaying a request (same request_id) is not counted as another message."""
        self.limits["myapp"] = ClientLimits(messages_per_hour=1)
        self.assertEqual(self.post(document(request_id="r1")).status, 202)
        self.clock.advance(3600)
        self.assertEqual(self.post(document(request_id="r1")).status, 202)
        self.assertEqual(self.post(document(request_id="r2")).status, 202)

    def test_accepted_messages_counted(self) -> None:
        """A 202 counts one accepted message at the clock's time; a replay and a 429
        count none."""
        self.assertEqual(self.post(document(request_id="r1")).status, 202)
        self.clock.advance(7)
        self.assertEqual(self.post(document(request_id="r1")).status, 202)  # replay
        self.assertEqual(self.post(document()).status, 202)
        self.assertEqual(self.post(document()).status, 429)
        self.assertEqual(self.accepted, [(NOW, 1), (NOW + 7, 1)])

"""``POST /api/v1/send/batch`` over Twisted's HTTP parser with a client certificate."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.web.resource import Resource

from rail.config.schema import ClientLimits
from rail.mail.batch import MAX_BATCH_ITEMS
from rail.policy.rates import ClientRates
from rail.refusals import Refusals
from rail.store.model import StoreUnavailableError
from rail.store.suppressions import Suppression
from rail.web.batch import BATCH_INLINE_LIMIT, SendBatch, SendRoutes
from rail.web.messages import MessageStatusResource
from rail.web.send import Send
from rail.web.site import RailSite
from tests.web.test_send import HOSTNAME, NOW, APITestCase, Response, document


class _BatchSite(APITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.accepted: list[tuple[float, int]] = []

    def site(self) -> RailSite:
        settings: dict[str, Any] = {
            "hostname": HOSTNAME,
            "max_message_size": self.max_message_size,
            "max_recipients": self.max_recipients,
        }
        counted = {"count_accepted": lambda now, count: self.accepted.append((now, count))}
        send = Send(self.store, self.clock, **settings, **counted)
        routes = SendRoutes(send, SendBatch(self.store, self.clock, **settings, **counted))
        v1 = Resource()
        v1.putChild(b"send", routes)
        v1.putChild(b"messages", MessageStatusResource(self.store))
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        short = Resource()
        short.putChild(b"send", routes)
        root.putChild(b"v1", short)
        return RailSite(root, max_body=4 * 1024 * 1024, idle_timeout=60.0, clock=self.clock)

    def batch(self, items: Any, path: str = "/api/v1/send/batch", **kwargs: Any) -> Response:
        body = json.dumps({"messages": items}).encode()
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return self.request("POST", path, body, headers, **kwargs)


class BatchTests(_BatchSite):
    def test_results_in_order(self) -> None:
        """Each item gets its own entry in order: 202 with id, recipients, suppressed and
        replayed for good ones, the single send's error for bad ones; only good ones are
        queued."""
        self.store.suppressions[("myapp", "carl@example.com")] = Suppression(
            "myapp", "carl@example.com", "hard_bounce", "dsn", NOW
        )
        response = self.batch(
            [
                document(request_id="a"),
                document(**{"from": "someone@else.example"}),
                document(to=[], cc=[]),
                "not an object",
                document(tag="t", metadata={"k": "v"}, request_id="b"),
            ]
        )
        self.assertEqual(response.status, 200)
        results = response.json()["results"]
        self.assertEqual([r["status"] for r in results], [202, 403, 400, 400, 202])
        self.assertEqual(
            results[0],
            {
                "status": 202,
                "id": results[0]["id"],
                "recipients": 2,
                "suppressed": [{"address": "carl@example.com", "reason": "hard_bounce"}],
                "replayed": False,
            },
        )
        self.assertEqual(
            [r["error"]["code"] for r in results[1:4]],
            ["SENDER_NOT_AUTHORIZED", "INVALID_REQUEST", "INVALID_REQUEST"],
        )
        self.assertEqual(set(self.store.messages), {results[0]["id"], results[4]["id"]})
        self.assertEqual(self.store.messages[results[4]["id"]].meta.tag, "t")

    def test_duplicate_request_id(self) -> None:
        """A request_id used twice in one batch: the first item is sent, the later one is
        refused with DUPLICATE_REQUEST_ID naming the first."""
        results = self.batch(
            [document(request_id="x"), document(request_id="x", subject="other")]
        ).json()["results"]
        self.assertEqual(results[0]["status"], 202)
        self.assertEqual(
            (results[1]["status"], results[1]["error"]["code"]), (400, "DUPLICATE_REQUEST_ID")
        )
        self.assertIn("messages[0]", results[1]["error"]["message"])
        self.assertEqual(len(self.store.messages), 1)

    def test_replay_and_conflict_per_item(self) -> None:
        """The same batch again replays each item (same ids, replayed true); an item whose
        request_id was used for another payload is a 409 IDEMPOTENCY_CONFLICT alone."""
        first = self.batch([document(request_id="p"), document(request_id="q")]).json()
        again = self.batch(
            [document(request_id="p"), document(request_id="q", subject="changed")],
            path="/v1/send/batch",
        ).json()
        self.assertEqual(again["results"][0], dict(first["results"][0], replayed=True))
        self.assertEqual(
            (again["results"][1]["status"], again["results"][1]["error"]["code"]),
            (409, "IDEMPOTENCY_CONFLICT"),
        )
        self.assertEqual(len(self.store.messages), 2)
        # Counted for the acceptance chart: the first batch's two, not the replay or
        # the conflict.
        self.assertEqual(self.accepted, [(NOW, 2), (NOW, 0)])

    def test_store_refusals_per_item_and_whole(self) -> None:
        """A full queue refuses each item with 503 QUEUE_FULL in its entry; a store that
        fails the whole transaction answers 503 QUEUE_UNAVAILABLE with Retry-After."""
        self.store.full = True
        results = self.batch([document()]).json()["results"]
        self.assertEqual((results[0]["status"], results[0]["error"]["code"]), (503, "QUEUE_FULL"))
        self.store.full = False
        failing: Deferred[Any] = Deferred()
        self.store.accept_many = lambda items: failing
        connection = self.connect()
        connection.send(
            "POST",
            "/api/v1/send/batch",
            json.dumps({"messages": [document()]}).encode(),
            {"Content-Type": "application/json"},
        )
        failing.errback(StoreUnavailableError("disk gone"))
        response = connection.response()
        self.assertEqual(response.error(), (503, "QUEUE_UNAVAILABLE"))
        self.assertEqual(response.headers["retry-after"], "60")

    def test_bad_batches(self) -> None:
        """A body that is no batch is refused as a whole with 400 and queues nothing:
        not JSON, no list, an empty or too long list, an unknown field, an
        Idempotency-Key header; a wrong Content-Type is 415; no certificate is 401."""
        for body in (
            b"[",
            b"{}",
            b'{"messages": {}}',
            b'{"messages": []}',
            json.dumps({"messages": [document()] * (MAX_BATCH_ITEMS + 1)}).encode(),
            json.dumps({"messages": [document()], "extra": 1}).encode(),
        ):
            response = self.request(
                "POST", "/api/v1/send/batch", body, {"Content-Type": "application/json"}
            )
            self.assertEqual(response.status, 400, body[:40])
        response = self.batch([document()], headers={"Idempotency-Key": "k"})
        self.assertEqual(response.error(), (400, "INVALID_REQUEST"))
        response = self.batch([document()], headers={"Content-Type": "text/plain"})
        self.assertEqual(response.error(), (415, "UNSUPPORTED_MEDIA_TYPE"))
        self.assertEqual(
            self.batch([document()], certificate=None).error(),
            (401, "CLIENT_CERTIFICATE_REQUIRED"),
        )
        self.assertEqual(self.store.messages, {})

    def test_single_send_still_answers(self) -> None:
        """``/api/v1/send`` itself and with a trailing slash still sends one message, and
        other paths below it are 404."""
        self.assertEqual(self.post(document()).status, 202)
        body = json.dumps(document()).encode()
        headers = {"Content-Type": "application/json"}
        self.assertEqual(self.request("POST", "/api/v1/send/", body, headers).status, 202)
        self.assertEqual(
            self.request("POST", "/api/v1/send/other", body, headers).error(),
            (404, "NOT_FOUND"),
        )

    def test_full_batch(self) -> None:
        """A batch of MAX_BATCH_ITEMS messages is accepted whole."""
        items = [document(request_id=f"r{i}") for i in range(MAX_BATCH_ITEMS)]
        results = self.batch(items).json()["results"]
        self.assertEqual({r["status"] for r in results}, {202})
        self.assertEqual(len(self.store.messages), MAX_BATCH_ITEMS)


class BatchRateTests(_BatchSite):
    def setUp(self) -> None:
        super().setUp()
        self.limits = {"myapp": ClientLimits(messages_per_hour=2)}
        self.rates = ClientRates(self.clock, lambda c: self.limits.get(c, ClientLimits()))
        self.refusals = Refusals(self.clock)

    def site(self) -> RailSite:
        settings: dict[str, Any] = {
            "hostname": HOSTNAME,
            "max_message_size": self.max_message_size,
            "max_recipients": self.max_recipients,
            "refusals": self.refusals,
            "rates": self.rates,
        }
        routes = SendRoutes(
            Send(self.store, self.clock, **settings),
            SendBatch(self.store, self.clock, **settings),
        )
        v1 = Resource()
        v1.putChild(b"send", routes)
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        return RailSite(root, max_body=4 * 1024 * 1024, idle_timeout=60.0, clock=self.clock)

    def test_items_count_against_the_limits_in_order(self) -> None:
        """A batch cannot pass the client's rate limits: items within them are sent, the
        ones after are 429 RATE_LIMITED with retry_after, counted as refusals; a single
        send afterwards is limited too."""
        results = self.batch([document(), document(), document()]).json()["results"]
        self.assertEqual([r["status"] for r in results], [202, 202, 429])
        self.assertEqual(results[2]["error"]["code"], "RATE_LIMITED")
        self.assertEqual(results[2]["retry_after"], 3600)
        self.assertEqual(len(self.store.messages), 2)
        self.assertEqual(self.refusals.counts, {("https", "messages_per_hour"): 1})
        self.assertEqual(self.post(document()).error(), (429, "RATE_LIMITED"))

    def test_items_the_store_does_not_accept_are_taken_back(self) -> None:
        """An item counts only if the store accepts it, as a single send does: a replay
        and items refused by a full queue leave the counts as they were (they count
        while the batch is decided, so the items after them in it see them)."""
        self.assertEqual(self.batch([document(request_id="a")]).json()["results"][0]["status"], 202)
        replay = self.batch([document(request_id="a")]).json()["results"][0]
        self.assertEqual((replay["status"], replay["replayed"]), (202, True))
        self.store.full = True
        full = self.batch([document(), document()]).json()["results"]
        self.assertEqual([r["error"]["code"] for r in full], ["QUEUE_FULL", "RATE_LIMITED"])
        self.store.full = False
        self.assertEqual(self.post(document()).status, 202)  # the second of the hour
        self.assertEqual(self.post(document()).error(), (429, "RATE_LIMITED"))

    def test_a_failed_batch_is_taken_back(self) -> None:
        """A batch the store fails whole (503) counts nothing."""
        self.store.closed = True
        self.assertEqual(self.batch([document()]).error(), (503, "QUEUE_UNAVAILABLE"))
        self.store.closed = False
        self.assertEqual(self.post(document()).status, 202)
        self.assertEqual(self.post(document()).status, 202)
        self.assertEqual(self.post(document()).error(), (429, "RATE_LIMITED"))


class BatchThreadTests(_BatchSite):
    def site(self) -> RailSite:
        self.threaded: list[int] = []

        def in_thread(work: Any) -> Deferred[Any]:
            self.threaded.append(1)
            return succeed(work())

        settings: dict[str, Any] = {
            "hostname": HOSTNAME,
            "max_message_size": self.max_message_size,
            "max_recipients": self.max_recipients,
            "in_thread": in_thread,
        }
        routes = SendRoutes(
            Send(self.store, self.clock, **settings),
            SendBatch(self.store, self.clock, **settings),
        )
        v1 = Resource()
        v1.putChild(b"send", routes)
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        return RailSite(root, max_body=4 * 1024 * 1024, idle_timeout=60.0, clock=self.clock)

    def test_large_batches_are_composed_in_a_thread(self) -> None:
        """A batch body over BATCH_INLINE_LIMIT is composed by ``in_thread``, a small one
        in place; both answer the same way."""
        small = self.batch([document()])
        self.assertEqual((small.status, self.threaded), (200, []))
        items = [document(subject=f"s{i}") for i in range(40)]
        self.assertGreater(len(json.dumps({"messages": items})), BATCH_INLINE_LIMIT)
        large = self.batch(items)
        self.assertEqual(
            ({r["status"] for r in large.json()["results"]}, self.threaded), ({202}, [1])
        )

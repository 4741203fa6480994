"""``GET /api/v1/messages/{id}``: owner-only status over Twisted's HTTP parser."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.store.ids import new_message_id
from rail.store.model import MessageStatus, NewMessage, RecipientStatus, StoreUnavailableError
from rail.web.messages import status_to_json
from tests.web.test_send import NOW, APITestCase, PendingStore


def _message(client: str = "myapp", received_at: float = NOW) -> NewMessage:
    return NewMessage(
        id=new_message_id(received_at),
        client=client,
        sender="noreply@ataca.io",
        recipients=("bob@example.com", "carl@example.com"),
        data=b"Subject: x\r\n\r\nhello\r\n",
        channel="api",
        received_at=received_at,
    )


class StatusTests(APITestCase):
    def _stored(self, client: str = "myapp") -> NewMessage:
        message = _message(client)
        self.successResultOf(self.store.accept(message))
        return message

    def test_owner_sees_status(self) -> None:
        """The owner gets 200 with the documented fields; times are RFC 3339 UTC; a
        message sent without them has null request_id and tag and empty metadata."""
        message = self._stored()
        response = self.request("GET", f"/api/v1/messages/{message.id}")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "application/json; charset=utf-8")
        self.assertEqual(
            response.json(),
            {
                "id": message.id,
                "status": "queued",
                "channel": "api",
                "from": "noreply@ataca.io",
                "size": len(message.data),
                "received_at": "2026-03-28T12:00:00Z",
                "reason": None,
                "body_purged_at": None,
                "recipients": [
                    {
                        "address": address,
                        "status": "queued",
                        "attempts": 0,
                        "last_reply": None,
                        "next_attempt_at": "2026-03-28T12:00:00Z",
                        "updated_at": "2026-03-28T12:00:00Z",
                        "reports": [],
                    }
                    for address in ("bob@example.com", "carl@example.com")
                ],
                "request_id": None,
                "tag": None,
                "metadata": {},
            },
        )

    def test_quarantined(self) -> None:
        """A quarantined message answers ``failed`` with the reason, message-wide and on
        each recipient that was pending."""
        message = self._stored()
        self.successResultOf(
            self.store.quarantine(message.id, "corrupt", "stored data is truncated", NOW + 5)
        )
        body = self.request("GET", f"/api/v1/messages/{message.id}").json()
        self.assertEqual(
            (body["status"], body["reason"]), ("failed", "quarantined: stored data is truncated")
        )
        self.assertEqual(
            [(r["status"], r["last_reply"], r["next_attempt_at"]) for r in body["recipients"]],
            [("failed", "quarantined: stored data is truncated", None)] * 2,
        )

    def test_delivery_progress(self) -> None:
        """Per-recipient attempts, last reply and next attempt follow delivery; a finished
        recipient has next_attempt_at null."""
        message = self._stored()
        self.clock.advance(90)
        self.store.update_recipient(message.id, 0, status="sent", last_reply="250 2.0.0 Ok")
        self.store.update_recipient(
            message.id,
            1,
            status="deferred",
            attempts=2,
            last_reply="451 4.7.1 Try again later",
            next_attempt_at=NOW + 990.5,
        )
        body = self.request("GET", f"/api/v1/messages/{message.id}").json()
        self.assertEqual(body["status"], "deferred")
        self.assertEqual(
            body["recipients"],
            [
                {
                    "address": "bob@example.com",
                    "status": "sent",
                    "attempts": 1,
                    "last_reply": "250 2.0.0 Ok",
                    "next_attempt_at": None,
                    "updated_at": "2026-03-28T12:01:30Z",
                    "reports": [],
                },
                {
                    "address": "carl@example.com",
                    "status": "deferred",
                    "attempts": 2,
                    "last_reply": "451 4.7.1 Try again later",
                    "next_attempt_at": "2026-03-28T12:16:30Z",
                    "reports": [],
                    "updated_at": "2026-03-28T12:01:30Z",
                },
            ],
        )

    def test_sent_through_api(self) -> None:
        """A message sent with POST /api/v1/send can be looked up by the returned id."""
        sent = self.post(
            {"from": "noreply@ataca.io", "to": ["bob@example.com"], "body_text": "hi"}
        ).json()
        body = self.request("GET", f"/api/v1/messages/{sent['id']}").json()
        self.assertEqual(
            (body["id"], body["status"], body["from"]), (sent["id"], "queued", "noreply@ataca.io")
        )

    def test_other_client(self) -> None:
        """Another client's message is 404 NOT_FOUND, like one that does not exist."""
        mine = self._stored()
        theirs = self._stored(client="otherapp")
        response = self.request("GET", f"/api/v1/messages/{theirs.id}")
        self.assertEqual(response.error(), (404, "NOT_FOUND"))
        unknown = self.request("GET", f"/api/v1/messages/{new_message_id(NOW)}")
        self.assertEqual(unknown.body, response.body)
        as_other = self.request(
            "GET", f"/api/v1/messages/{mine.id}", certificate=self.other_certificate
        )
        self.assertEqual(as_other.error(), (404, "NOT_FOUND"))

    def test_body_purged(self) -> None:
        """Once retention dropped a finished message's bytes, its status still answers,
        with ``body_purged_at`` set and the accepted size."""
        message = self._stored()
        for index in (0, 1):
            self.store.update_recipient(message.id, index, status="sent", last_reply="250 ok")
        self.successResultOf(self.store.purge(NOW + 8 * 86400, NOW + 1, NOW - 1, 10))
        body = self.request("GET", f"/api/v1/messages/{message.id}").json()
        self.assertEqual(
            (body["status"], body["size"], body["body_purged_at"]),
            ("sent", len(message.data), "2026-04-05T12:00:00Z"),
        )

    def test_expired(self) -> None:
        """After retention deleted records up to some time, an id older than that which is
        not found answers 404 MESSAGE_EXPIRED, whoever asks and whether or not it existed;
        a younger unknown id is still NOT_FOUND, and a message still stored is found."""
        old = self._stored()
        for index in (0, 1):
            self.store.update_recipient(old.id, index, status="sent", last_reply="250 ok")
        kept = _message(received_at=NOW + 10)
        self.successResultOf(self.store.accept(kept))
        self.successResultOf(self.store.purge(NOW + 30 * 86400, NOW + 5, NOW + 5, 10))
        gone = self.request("GET", f"/api/v1/messages/{old.id}")
        self.assertEqual(gone.error(), (404, "MESSAGE_EXPIRED"))
        never = self.request("GET", f"/api/v1/messages/{new_message_id(NOW - 60)}")
        self.assertEqual(never.error(), (404, "MESSAGE_EXPIRED"))
        young = self.request("GET", f"/api/v1/messages/{new_message_id(NOW + 6)}")
        self.assertEqual(young.error(), (404, "NOT_FOUND"))
        self.assertEqual(self.request("GET", f"/api/v1/messages/{kept.id}").status, 200)

    def test_no_certificate(self) -> None:
        """Without a client certificate the answer is 401, whatever the id."""
        message = self._stored()
        for path in (f"/api/v1/messages/{message.id}", "/api/v1/messages/nope"):
            response = self.request("GET", path, certificate=None)
            self.assertEqual(response.error(), (401, "CLIENT_CERTIFICATE_REQUIRED"), path)

    def test_post_not_allowed(self) -> None:
        """Only GET is supported on a message."""
        message = self._stored()
        response = self.request("POST", f"/api/v1/messages/{message.id}")
        self.assertEqual(response.error(), (405, "METHOD_NOT_ALLOWED"))


class MalformedIdTests(APITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = PendingStore()

    def test_malformed_ids(self) -> None:
        """A malformed id is 404 NOT_FOUND without asking the store; so are the
        collection itself and paths below a message."""
        valid = new_message_id(NOW)
        for path in (
            "/api/v1/messages/nope",
            f"/api/v1/messages/{valid.lower()}",
            f"/api/v1/messages/{valid}X",
            f"/api/v1/messages/{valid[:-1]}",
            "/api/v1/messages/%C3%A9",
            "/api/v1/messages/",
            "/api/v1/messages",
            f"/api/v1/messages/{valid}/recipients",
        ):
            response = self.request("GET", path)
            self.assertEqual(response.error(), (404, "NOT_FOUND"), path)
        self.assertEqual(self.store.queries, [])

    def test_store_unavailable(self) -> None:
        """A store failure is 503 QUEUE_UNAVAILABLE with Retry-After."""
        connection = self.connect()
        message_id = new_message_id(NOW)
        connection.send("GET", f"/api/v1/messages/{message_id}")
        client, queried, d = self.store.queries[0]
        self.assertEqual((client, queried), ("myapp", message_id))
        self.assertEqual(connection.transport.value(), b"")
        d.errback(StoreUnavailableError("database is locked"))
        response = connection.response()
        self.assertEqual(response.error(), (503, "QUEUE_UNAVAILABLE"))
        self.assertEqual(response.headers["retry-after"], "60")

    def test_unexpected_store_error(self) -> None:
        """Any other failure is 503 too, and logged as a bug."""
        connection = self.connect()
        connection.send("GET", f"/api/v1/messages/{new_message_id(NOW)}")
        self.store.queries[0][2].errback(RuntimeError("boom"))
        self.assertEqual(connection.response().error(), (503, "QUEUE_UNAVAILABLE"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_client_gone(self) -> None:
        """An answer arriving after the client left is dropped quietly."""
        connection = self.connect()
        connection.send("GET", f"/api/v1/messages/{new_message_id(NOW)}")
        connection.close()
        self.store.queries[0][2].callback(None)
        self.assertEqual(connection.transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])


class StatusJSONTests(SynchronousTestCase):
    def test_times_truncate_to_seconds(self) -> None:
        """Fractional seconds are dropped, not rounded, in RFC 3339 times."""
        status = MessageStatus(
            id="01KMTBZ1G0ABCDEFGHJKMNPQRS",
            client="myapp",
            sender="noreply@ataca.io",
            channel="smtp",
            size=10,
            received_at=NOW + 0.999,
            status="bounced",
            recipients=(
                RecipientStatus(
                    address="a@example.com",
                    status="bounced",
                    attempts=3,
                    last_reply="550 5.1.1 No such user",
                    next_attempt_at=None,
                    updated_at=NOW + 59.9,
                ),
            ),
        )
        body = status_to_json(status)
        self.assertEqual(body["received_at"], "2026-03-28T12:00:00Z")
        self.assertEqual(body["recipients"][0]["updated_at"], "2026-03-28T12:00:59Z")
        self.assertEqual(body["channel"], "smtp")

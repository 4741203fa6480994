"""``POST /api/v1/send`` and the header section cap (413 ``HEADER_TOO_LARGE``), and
large requests composed off the reactor thread with the same answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import capturedLogs
from twisted.web.resource import Resource

from rail.mail.headers import HeaderLimits
from rail.refusals import Refusals
from rail.web.messages import MessageStatusResource
from rail.web.send import INLINE_LIMIT, Send
from rail.web.site import RailSite
from tests.web.test_send import HOSTNAME, APITestCase, document


class FakeThreads:
    """``in_thread`` for tests: records each call; runs it when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def __call__(self, work: Callable[[], Any]) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.pending.append((work, done))
        return done

    def run_all(self) -> None:
        while self.pending:
            work, done = self.pending.pop(0)
            maybeDeferred(work).chainDeferred(done)


class HeaderLimitAPITests(APITestCase):
    header_limits = HeaderLimits(size=4096, fields=20)

    def setUp(self) -> None:
        super().setUp()
        self.refusals = Refusals(self.clock)
        self.threads = FakeThreads()

    def site(self) -> RailSite:
        v1 = Resource()
        v1.putChild(
            b"send",
            Send(
                self.store,
                self.clock,
                hostname=HOSTNAME,
                max_message_size=self.max_message_size,
                max_recipients=self.max_recipients,
                header_limits=self.header_limits,
                refusals=self.refusals,
                in_thread=self.threads,
            ),
        )
        v1.putChild(b"messages", MessageStatusResource(self.store))
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        return RailSite(root, max_body=4 * 1024 * 1024, idle_timeout=60.0, clock=self.clock)

    def test_subject_over_size(self) -> None:
        """A Subject longer than header_size is 413 HEADER_TOO_LARGE before anything is
        built; nothing is stored and the refusal is counted."""
        response = self.post(document(subject="s" * 5000))
        self.assertEqual(response.error(), (413, "HEADER_TOO_LARGE"))
        self.assertIn("4096", response.json()["error"]["message"])
        self.assertEqual(self.store.messages, {})
        self.assertEqual(self.refusals.counts, {("https", "header_size"): 1})

    def test_too_many_fields(self) -> None:
        """More header fields than header_fields, given as ``headers`` entries or made by
        the composition, is 413 HEADER_TOO_LARGE."""
        many = {f"X-Field-{n}": "v" for n in range(21)}
        self.assertEqual(self.post(document(headers=many)).error(), (413, "HEADER_TOO_LARGE"))
        some = {f"X-Field-{n}": "v" for n in range(15)}  # plus From, To, Cc, Subject...
        self.assertEqual(self.post(document(headers=some)).error(), (413, "HEADER_TOO_LARGE"))
        fewer = {f"X-Field-{n}": "v" for n in range(8)}
        self.assertEqual(self.post(document(headers=fewer)).status, 202)
        self.assertEqual(self.refusals.counts, {("https", "header_fields"): 2})

    def test_encoding_grows_over_size(self) -> None:
        """A Subject within header_size as characters that is over it once encoded (each
        non-ASCII character becomes several octets of encoded words) is refused too: the
        composed header section is measured."""
        response = self.post(document(subject="é" * 3000))
        self.assertEqual(response.error(), (413, "HEADER_TOO_LARGE"))
        self.assertEqual(self.store.messages, {})

    def test_within_limits_long_subject(self) -> None:
        """A long Subject within the limits is accepted and written folded, its lines
        within 78 octets."""
        response = self.post(document(subject="word " * 600))
        self.assertEqual(response.status, 202)
        [message] = self.store.messages.values()
        head = message.data.split(b"\r\n\r\n")[0]
        self.assertLessEqual(max(len(line) for line in head.split(b"\r\n")), 78)

    def test_large_request_composed_in_thread(self) -> None:
        """A request body over INLINE_LIMIT is composed by ``in_thread``: no answer until
        that work has run, then the same 202 and stored message as inline."""
        attachment = {"filename": "a.bin", "content": "QUFB" * (INLINE_LIMIT // 4 + 1)}
        connection = self.connect()
        body = document(attachments=[attachment])
        connection.send(
            "POST",
            "/api/v1/send",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        self.assertEqual(connection.transport.value(), b"")
        self.assertEqual(len(self.threads.pending), 1)
        self.threads.run_all()
        response = connection.response()
        self.assertEqual(response.status, 202)
        self.assertEqual(list(self.store.messages), [response.json()["id"]])

    def test_small_request_inline(self) -> None:
        """A small request is composed in place: no thread is asked for."""
        self.assertEqual(self.post(document()).status, 202)
        self.assertEqual(self.threads.pending, [])

    def test_thread_failure_is_500(self) -> None:
        """A bug while composing in the thread is answered 500 INTERNAL_ERROR and
        logged, as it is inline."""
        connection = self.connect()
        body = b'{"from": "noreply@ataca.io", "subject": "' + b"x" * INLINE_LIMIT + b'"}'
        connection.send("POST", "/api/v1/send", body, {"Content-Type": "application/json"})
        [(_, done)] = self.threads.pending
        self.threads.pending.clear()
        with capturedLogs() as events:
            done.errback(RuntimeError("bug"))
        self.assertEqual(connection.response().error(), (500, "INTERNAL_ERROR"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(
            any("composing a message failed" in str(e.get("log_format")) for e in events)
        )

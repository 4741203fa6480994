"""``POST /api/v1/send`` over Twisted's real HTTP/1.1 parser and Rail's site, with a
client certificate presented by an in-memory transport instead of a TLS handshake."""

from __future__ import annotations

import base64
import json
import re
from email import message_from_bytes, policy
from typing import Any

import attrs
from OpenSSL.crypto import X509
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from zope.interface import implementer
from zope.interface.verify import verifyObject

from rail.store.model import (
    Accepted,
    IdempotencyKey,
    IQueueStore,
    NewMessage,
    StoreUnavailableError,
)
from rail.testing import MemoryStore
from rail.web import send
from rail.web.messages import MessageStatusResource
from rail.web.send import Send
from rail.web.site import RailSite
from tests.pki.helpers import issue_client, make_ca

NOW = 1774699200.0  # 2026-03-28T12:00:00Z
HOSTNAME = "mail.rail.test"
_BARE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")


class TLSTransport(StringTransport):
    """What twisted.web sees of a TLS connection: the peer's verified certificate."""

    def __init__(self, certificate: X509 | None) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "192.0.2.7", 50000))
        self._certificate = certificate

    def getPeerCertificate(self) -> X509 | None:
        return self._certificate


@attrs.frozen
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    reason: str = ""
    """The status line's reason phrase."""

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> tuple[int, str]:
        return self.status, self.json()["error"]["code"]


def parse_response(raw: bytes, head_request: bool = False) -> Response:
    """One HTTP/1.1 response with a Content-Length (every Rail JSON answer has one)."""
    head, separator, rest = raw.partition(b"\r\n\r\n")
    assert separator, f"incomplete response: {raw!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    assert len(rest) == length or (rest == b"" and head_request), (rest, length)
    _, code, reason = status_line.split(" ", 2)
    return Response(int(code), headers, rest, reason)


class Connection:
    """One client connection to ``site``; requests are fed to Twisted's HTTP parser."""

    def __init__(self, site: RailSite, certificate: X509 | None) -> None:
        self.transport = TLSTransport(certificate)
        protocol = site.buildProtocol(IPv4Address("TCP", "192.0.2.7", 50000))
        assert protocol is not None
        self.protocol = protocol
        self.protocol.makeConnection(self.transport)
        self.open = True

    def send(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: rail.test", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.protocol.dataReceived("\r\n".join(lines).encode() + b"\r\n\r\n" + body)

    def response(self, head_request: bool = False) -> Response:
        raw = self.transport.value()
        self.transport.clear()
        return parse_response(raw, head_request)

    def close(self) -> None:
        if self.open:
            self.open = False
            self.protocol.connectionLost(Failure(ConnectionDone()))


@implementer(IQueueStore)
class PendingStore:
    """A store whose answers the test fires by hand, to see what happens meanwhile."""

    def __init__(self) -> None:
        self.accepts: list[tuple[NewMessage, IdempotencyKey | None, Deferred[Any]]] = []
        self.queries: list[tuple[str, str, Deferred[Any]]] = []

    def accept(self, message: NewMessage, idempotency: IdempotencyKey | None = None) -> Any:
        d: Deferred[Any] = Deferred()
        self.accepts.append((message, idempotency, d))
        return d

    def status(self, client: str, message_id: str) -> Any:
        d: Deferred[Any] = Deferred()
        self.queries.append((client, message_id, d))
        return d

    def close(self) -> Any:
        return succeed(None)


class APITestCase(SynchronousTestCase):
    """A Rail HTTPS site with /api/v1/send and /api/v1/messages over a store, and a
    client certificate for ``myapp`` (senders noreply@ataca.io, alerts@smtp.ataca.io)."""

    max_message_size = 1024 * 1024
    max_recipients = 10

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store: Any = MemoryStore(self.clock)
        ca = make_ca()
        certificate, _ = issue_client(ca, name="myapp")
        other, _ = issue_client(ca, name="otherapp", emails=("other@ataca.io",))
        self.certificate = X509.from_cryptography(certificate)
        self.other_certificate = X509.from_cryptography(other)
        self._connections: list[Connection] = []
        self.addCleanup(self._close_all)

    def _close_all(self) -> None:
        for connection in self._connections:
            connection.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])

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
            ),
        )
        v1.putChild(b"messages", MessageStatusResource(self.store))
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        return RailSite(root, max_body=4 * 1024 * 1024, idle_timeout=60.0, clock=self.clock)

    def connect(self, certificate: X509 | str | None = "mine") -> Connection:
        chosen = self.certificate if certificate == "mine" else certificate
        assert not isinstance(chosen, str)
        connection = Connection(self.site(), chosen)
        self._connections.append(connection)
        return connection

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        certificate: X509 | str | None = "mine",
    ) -> Response:
        connection = self.connect(certificate)
        connection.send(method, path, body, headers)
        return connection.response()

    def post(
        self,
        document: dict[str, Any] | bytes,
        headers: dict[str, str] | None = None,
        certificate: X509 | str | None = "mine",
    ) -> Response:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        return self.request("POST", "/api/v1/send", body, all_headers, certificate)


def document(**changes: Any) -> dict[str, Any]:
    """A valid send request for ``myapp``, with fields added or replaced."""
    value: dict[str, Any] = {
        "from": "Ataca <noreply@ataca.io>",
        "to": ["bob@example.com"],
        "cc": ["Carl <carl@example.com>"],
        "subject": "Your receipt",
        "body_text": "Thanks!",
    }
    value.update(changes)
    return value


class SendTests(APITestCase):
    def test_accepted(self) -> None:
        """A valid request is 202 with exactly id, status queued, the recipient count and
        no suppressed recipient, and the message is in the store under that id."""
        response = self.post(document())
        self.assertEqual(response.status, 202)
        self.assertEqual(response.headers["content-type"], "application/json; charset=utf-8")
        body = response.json()
        self.assertEqual(
            body, {"id": body["id"], "status": "queued", "recipients": 2, "suppressed": []}
        )
        self.assertNotIn("idempotent-replayed", response.headers)
        message = self.store.messages[body["id"]]
        self.assertEqual(
            (message.client, message.sender, message.recipients, message.channel),
            ("myapp", "noreply@ataca.io", ("bob@example.com", "carl@example.com"), "api"),
        )
        self.assertEqual(message.received_at, NOW)

    def test_stored_bytes(self) -> None:
        """The stored message is CRLF-canonical, names Bcc recipients nowhere, carries a
        Message-ID with the id and Rail's hostname, and the envelope includes Bcc."""
        response = self.post(document(bcc=["Secret <secret@example.com>"]))
        message_id = response.json()["id"]
        message = self.store.messages[message_id]
        self.assertIsNone(_BARE_LINE_END.search(message.data))
        self.assertTrue(message.data.endswith(b"\r\n"))
        self.assertNotIn(b"secret", message.data.lower())
        self.assertEqual(message.recipients[-1], "secret@example.com")
        parsed = message_from_bytes(message.data, policy=policy.default)
        self.assertEqual(parsed["Message-ID"], f"<{message_id}@{HOSTNAME}>")
        self.assertEqual(parsed["From"], "Ataca <noreply@ataca.io>")

    def test_no_certificate(self) -> None:
        """Without a client certificate the answer is 401 CLIENT_CERTIFICATE_REQUIRED."""
        response = self.post(document(), certificate=None)
        self.assertEqual(response.error(), (401, "CLIENT_CERTIFICATE_REQUIRED"))
        self.assertEqual(response.headers["www-authenticate"], "mutual-tls")
        self.assertEqual(self.store.messages, {})

    def test_replay(self) -> None:
        """The same request_id and payload again answers 202 with the first id and
        ``Idempotent-Replayed: true``, and queues nothing new."""
        first = self.post(document(request_id="order-42"))
        self.clock.advance(5)
        second = self.post(document(request_id="order-42"))
        self.assertEqual(second.status, 202)
        self.assertEqual(second.json(), first.json())
        self.assertEqual(second.headers["idempotent-replayed"], "true")
        self.assertEqual(list(self.store.messages), [first.json()["id"]])

    def test_replay_with_header(self) -> None:
        """The Idempotency-Key header works like request_id, and the two are
        interchangeable for the same payload."""
        first = self.post(document(), headers={"Idempotency-Key": "order-7"})
        second = self.post(document(request_id="order-7"))
        self.assertEqual(second.json()["id"], first.json()["id"])
        self.assertEqual(second.headers["idempotent-replayed"], "true")
        self.assertEqual(len(self.store.messages), 1)

    def test_conflict(self) -> None:
        """A different payload under a used request_id is 409 IDEMPOTENCY_CONFLICT."""
        self.post(document(request_id="order-42"))
        response = self.post(document(request_id="order-42", subject="Changed"))
        self.assertEqual(response.error(), (409, "IDEMPOTENCY_CONFLICT"))
        self.assertEqual(len(self.store.messages), 1)

    def test_key_mismatch(self) -> None:
        """request_id and Idempotency-Key with different values are 400 INVALID_REQUEST."""
        response = self.post(document(request_id="a"), headers={"Idempotency-Key": "b"})
        self.assertEqual(response.error(), (400, "INVALID_REQUEST"))

    def test_header_injection(self) -> None:
        """CR or LF in any header-bound field is 400 INVALID_REQUEST naming the field, and
        nothing is queued."""
        attachment = {"filename": "a.txt", "content_type": "text/plain", "content": "YQ=="}
        cases: dict[str, dict[str, Any]] = {
            "from": {"from": "noreply@ataca.io\r\nBcc: victim@example.net"},
            "to[0]": {"to": ["bob@example.com\r\nBcc: victim@example.net"]},
            "cc[0]": {"cc": ["Carl\n <carl@example.com>"]},
            "bcc[0]": {"bcc": ["b@example.com\rX: y"]},
            "reply_to[0]": {"reply_to": "r@example.com\nX: y"},
            "subject": {"subject": "Hi\r\nBcc: victim@example.net"},
            "headers (a field name)": {"headers": {"X-A\r\nBcc": "x"}},
            "headers.X-A": {"headers": {"X-A": "x\r\nBcc: victim@example.net"}},
            "attachments[0].filename": {"attachments": [{**attachment, "filename": "a\r\n.txt"}]},
            "attachments[0].content_type": {
                "attachments": [{**attachment, "content_type": "text/plain\r\nX: y"}]
            },
            "subject (NUL)": {"subject": "Hi\x00there"},
        }
        for field, changes in cases.items():
            response = self.post(document(**changes))
            self.assertEqual(response.error(), (400, "INVALID_REQUEST"), field)
            self.assertTrue(
                response.json()["error"]["message"].startswith(field.split(" (NUL)")[0]), field
            )
        self.assertEqual(self.store.messages, {})

    def test_encoded_word_injection(self) -> None:
        """RFC 2047 encoded words that decode to CR or LF are 400 INVALID_REQUEST in every
        header-bound field, plain-looking or not, and nothing is queued."""
        bad = "=?utf-8?q?x=0D=0ABcc:_victim@example.net?="
        for changes in (
            {"from": "Ataca, =?utf-8?q?a=00?= <noreply@ataca.io>"},
            {"to": ["Bob: =?utf-8?b?YQ1i?= <bob@example.com>"]},
            {"subject": "=?utf-8?b?YQ0K!?="},
            {"subject": bad},
            {"subject": f"Your receipt {bad}"},
            {"from": f"{bad} <noreply@ataca.io>"},
            {"to": [f"{bad} <bob@example.com>"]},
            {"cc": [f"Carl {bad} <carl@example.com>"]},
            {"reply_to": f"{bad} <help@ataca.io>"},
            {"headers": {"X-Campaign": bad}},
            {"headers": {"X-Campaign": bad}, "body_html": "<p>x</p>"},
        ):
            response = self.post(document(**changes))
            self.assertEqual(response.error(), (400, "INVALID_REQUEST"), changes)
            self.assertIn("control characters", response.json()["error"]["message"], changes)
        self.assertEqual(self.store.messages, {})

    def test_field_allowed_once(self) -> None:
        """A custom field the RFC allows once (Orig-Date), given twice in different case,
        is 400 INVALID_REQUEST, not a 500, and nothing is queued."""
        date = "Sat, 28 Mar 2026 11:00:00 +0000"
        response = self.post(document(headers={"Orig-Date": date, "orig-date": date}))
        self.assertEqual(response.error(), (400, "INVALID_REQUEST"))
        self.assertEqual(self.store.messages, {})

    def test_unauthorized_from(self) -> None:
        """A From address outside the certificate is 403 SENDER_NOT_AUTHORIZED, whether
        bare or behind a display name (even one that looks like an allowed address)."""
        for sender in (
            "other@ataca.io",
            "Name <other@x.test>",
            "noreply@ataca.io <other@x.test>",
            "NoReply@ataca.io",
        ):
            response = self.post(document(**{"from": sender}))
            self.assertEqual(response.error(), (403, "SENDER_NOT_AUTHORIZED"), sender)
        self.assertEqual(self.store.messages, {})

    def test_other_client_certificate(self) -> None:
        """Authorization follows the presented certificate: another app's certificate
        cannot send as myapp's addresses."""
        response = self.post(document(), certificate=self.other_certificate)
        self.assertEqual(response.error(), (403, "SENDER_NOT_AUTHORIZED"))

    def test_too_large(self) -> None:
        """A composed message over max_message_size is 413 PAYLOAD_TOO_LARGE."""
        content = base64.b64encode(b"\x00" * self.max_message_size).decode()
        response = self.post(document(attachments=[{"filename": "big.bin", "content": content}]))
        self.assertEqual(response.error(), (413, "PAYLOAD_TOO_LARGE"))
        self.assertEqual(self.store.messages, {})

    def test_too_many_recipients(self) -> None:
        """More distinct recipients than max_recipients is 400 TOO_MANY_RECIPIENTS."""
        to = [f"r{i}@example.com" for i in range(self.max_recipients)]
        self.assertEqual(self.post(document(to=to, cc=[])).status, 202)
        response = self.post(document(to=to))
        self.assertEqual(response.error(), (400, "TOO_MANY_RECIPIENTS"))

    def test_invalid_json(self) -> None:
        """A body that is not a JSON object is 400 INVALID_JSON."""
        for body in (b"{", b"[]", b"\xff"):
            self.assertEqual(self.post(body).error(), (400, "INVALID_JSON"), body)

    def test_invalid_request(self) -> None:
        """Validation problems are 400 INVALID_REQUEST with a message naming the field."""
        response = self.post(document(attachment=[]))
        self.assertEqual(response.error(), (400, "INVALID_REQUEST"))
        self.assertIn("'attachment'", response.json()["error"]["message"])

    def test_content_type(self) -> None:
        """Only application/json bodies (UTF-8) are read; others are 415."""
        body = json.dumps(document()).encode()
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            response = self.request("POST", "/api/v1/send", body, {"Content-Type": content_type})
            self.assertEqual(response.error(), (415, "UNSUPPORTED_MEDIA_TYPE"), content_type)
        response = self.request(
            "POST", "/api/v1/send", body, {"Content-Type": "application/json; charset=latin-1"}
        )
        self.assertEqual(response.status, 415)
        self.assertEqual(self.request("POST", "/api/v1/send", body).status, 415)
        response = self.request(
            "POST", "/api/v1/send", body, {"Content-Type": 'Application/JSON; charset="UTF-8"'}
        )
        self.assertEqual(response.status, 202)

    def test_queue_full(self) -> None:
        """A full queue is 503 QUEUE_FULL with Retry-After: 60."""
        self.store.full = True
        response = self.post(document())
        self.assertEqual(response.error(), (503, "QUEUE_FULL"))
        self.assertEqual(response.headers["retry-after"], "60")

    def test_store_unavailable(self) -> None:
        """A store failure is 503 QUEUE_UNAVAILABLE with Retry-After."""
        self.store.fail_next = StoreUnavailableError("disk I/O error")
        response = self.post(document())
        self.assertEqual(response.error(), (503, "QUEUE_UNAVAILABLE"))
        self.assertEqual(response.headers["retry-after"], "60")
        self.assertNotIn("disk", response.body.decode())

    def test_unexpected_store_error(self) -> None:
        """Any other store failure is also 503 QUEUE_UNAVAILABLE, and is logged as a bug."""
        self.store.fail_next = RuntimeError("boom")
        response = self.post(document())
        self.assertEqual(response.error(), (503, "QUEUE_UNAVAILABLE"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_compose_bug(self) -> None:
        """An exception while composing is a JSON 500 INTERNAL_ERROR, logged, not an
        HTML traceback page."""

        def broken(*args: object, **kwargs: object) -> None:
            raise ValueError("bug")

        self.patch(send, "compose", broken)
        response = self.post(document())
        self.assertEqual(response.error(), (500, "INTERNAL_ERROR"))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_audit_line(self) -> None:
        """An accepted message writes one rail.audit line with the stable fields; a
        replay writes none."""
        with capturedLogs() as events:
            response = self.post(document(request_id="k"))
            self.post(document(request_id="k"))
        audit = [e for e in events if e.get("log_namespace") == "rail.audit"]
        self.assertEqual(len(audit), 1)
        message = self.store.messages[response.json()["id"]]
        self.assertEqual(
            formatEvent(audit[0]),
            f"accepted id={message.id} client=myapp from=noreply@ataca.io recipients=2"
            f" size={len(message.data)} channel=api",
        )
        self.assertEqual(
            {k: audit[0][k] for k in ("msg_id", "client", "sender", "recipients", "channel")},
            {
                "msg_id": message.id,
                "client": "myapp",
                "sender": "noreply@ataca.io",
                "recipients": 2,
                "channel": "api",
            },
        )

    def test_method_not_allowed(self) -> None:
        """GET on the send endpoint is 405 with Allow: POST."""
        response = self.request("GET", "/api/v1/send")
        self.assertEqual(response.error(), (405, "METHOD_NOT_ALLOWED"))
        self.assertIn("POST", response.headers["allow"])

    def test_head_without_get(self) -> None:
        """HEAD on a POST-only endpoint is a JSON 405 (not a 500 from a missing GET),
        and Allow does not offer HEAD."""
        connection = self.connect()
        connection.send("HEAD", "/api/v1/send")
        response = connection.response(head_request=True)
        self.assertEqual(response.status, 405)
        self.assertEqual(response.headers["allow"], "POST")

    def test_subpath(self) -> None:
        """Paths below the send endpoint are 404."""
        response = self.request("POST", "/api/v1/send/more", b"{}")
        self.assertEqual(response.error(), (404, "NOT_FOUND"))


class AsynchronousTests(APITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = PendingStore()
        verifyObject(IQueueStore, self.store)

    def _start(self) -> Connection:
        connection = self.connect()
        body = json.dumps(document()).encode()
        connection.send("POST", "/api/v1/send", body, {"Content-Type": "application/json"})
        return connection

    def test_answer_waits_for_store(self) -> None:
        """Nothing is answered until the store says the message is durable."""
        connection = self._start()
        self.assertEqual(connection.transport.value(), b"")
        message, idempotency, d = self.store.accepts[0]
        self.assertIsNone(idempotency)
        d.callback(Accepted(message.id, 2))
        response = connection.response()
        self.assertEqual(response.status, 202)
        self.assertEqual(response.json()["id"], message.id)

    def test_client_gone(self) -> None:
        """If the client disconnects before the store answers, nothing is written, no
        error is raised, and the accepted message is still audited."""
        connection = self._start()
        connection.close()
        message, _, d = self.store.accepts[0]
        with capturedLogs() as events:
            d.callback(Accepted(message.id, 2))
        self.assertEqual(connection.transport.value(), b"")
        self.assertEqual(
            [e["msg_id"] for e in events if e.get("log_namespace") == "rail.audit"],
            [message.id],
        )
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_client_gone_then_store_fails(self) -> None:
        """A store failure after the client left is logged but written nowhere."""
        connection = self._start()
        connection.close()
        _, _, d = self.store.accepts[0]
        d.errback(StoreUnavailableError("gone"))
        self.assertEqual(connection.transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])

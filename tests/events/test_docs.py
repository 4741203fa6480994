"""docs/events: the JSON Schemas describe the events Rail really stores, and the
verification examples accept what Rail really signs (and refuse a tampered body).

The events come from the real SQLite store driven as delivery and the inbound dispatcher
drive it; each payload is what the event dispatcher builds of the claimed job. The Python
example always runs; the Node and Go ones when ``node`` and ``go`` are installed
(required under CI=true: .ci/provision installs them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import jsonschema
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rail.events.model import EVENT_TYPES
from rail.events.payload import event_payload
from rail.events.subscriptions import Subscription, Subscriptions
from rail.inbound.model import InboundMessage, WebhookResult, WebhookTarget
from rail.store.ids import new_message_id
from rail.store.model import JobResult, MessageMeta, NewMessage, RecipientUpdate
from rail.store.sqlite import SQLiteStore
from rail.webhooks.key import WebhookKey
from rail.webhooks.signing import webhook_headers
from tests.store.test_contract import open_sqlite
from tests.support.tools import need_tool

_DOCS = Path(__file__).resolve().parents[2] / "docs" / "events"
_EXAMPLES = _DOCS / "examples"
_T0 = 1_800_000_000.0
_ENVELOPE = (
    "type",
    "id",
    "timestamp",
    "client",
    "message_id",
    "request_id",
    "tag",
    "metadata",
    "recipient",
    "sandbox",
    "details",
)


def _schema(event_type: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((_DOCS / f"{event_type}.schema.json").read_text())
    return schema


def _rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def stored_payloads(store: SQLiteStore) -> list[dict[str, Any]]:
    """The payload the event dispatcher POSTs for every stored event: claimed from the
    store as the dispatcher claims them, built by :func:`rail.events.payload.event_payload`."""
    jobs = await store.claim_events(_T0 + 10**6, 1000, frozenset())
    return [event_payload(job) for job in sorted(jobs, key=lambda job: job.id)]


class SchemaFileTests(SynchronousTestCase):
    def test_one_valid_schema_per_type(self) -> None:
        """docs/events has a draft 2020-12 schema for each event type and nothing else;
        each requires the whole envelope and pins its type."""
        names = sorted(p.name for p in _DOCS.glob("*.schema.json"))
        self.assertEqual(names, sorted(f"{t}.schema.json" for t in EVENT_TYPES))
        for event_type in EVENT_TYPES:
            schema = _schema(event_type)
            jsonschema.Draft202012Validator.check_schema(schema)
            self.assertEqual(schema["$schema"], "https://json-schema.org/draft/2020-12/schema")
            self.assertEqual(tuple(schema["required"]), _ENVELOPE)
            self.assertEqual(schema["properties"]["type"], {"const": event_type})

    def test_envelopes_agree(self) -> None:
        """The envelope fields mean the same in every file (only ``type``, ``recipient``
        and ``details`` differ by type)."""
        common = {
            name: value
            for name, value in _schema("message.delivered")["properties"].items()
            if name not in ("type", "recipient", "details")
        }
        for event_type in EVENT_TYPES:
            properties = _schema(event_type)["properties"]
            for name, value in common.items():
                self.assertEqual(properties[name], value, (event_type, name))


class EmittedEventsMatchSchemasTests(TestCase):
    """Every type Rail's store emits, produced for real, validates against its schema."""

    async def test_emitted_events_validate(self) -> None:
        """accepted, delivered, deferred, bounced (smtp, expired and operator), expired,
        deleted and inbound.failed, with and without meta, all validate; a broken one does
        not."""
        directory = Path(self.mktemp()) / "queue"
        store = open_sqlite(self, directory)
        store.subscriptions = Subscriptions({"app": Subscription(frozenset(EVENT_TYPES))})
        message = NewMessage(
            id=new_message_id(_T0),
            client="app",
            sender="app@rail.example",
            recipients=("ok@example.net", "slow@example.net", "gone@example.net", "x@e.example"),
            data=b"Subject: hi\r\n\r\nhello\r\n",
            channel="smtp",
            received_at=_T0,
            meta=MessageMeta("order-42", "receipts", {"order": "42"}),
        )
        await store.accept(message)
        expiry = "554 5.4.7 delivery time expired; last attempt: 421 4.3.2 busy"
        await store.record(
            JobResult(
                message.id,
                _T0 + 2,
                (
                    RecipientUpdate(0, "sent", "250 2.0.0 Ok: queued as 4Xyz", "mx.example.net"),
                    RecipientUpdate(1, "deferred", "421 4.3.2 busy", "mx.example.net", _T0 + 62),
                    RecipientUpdate(2, "bounced", "550 5.1.1 no such user", "mx.example.net"),
                    RecipientUpdate(3, "bounced", expiry, None, expired_after="421 4.3.2 busy"),
                ),
                mx="mx.example.net",
                address="192.0.2.7",
                tls="TLSv1.3",
            )
        )
        bare = NewMessage(
            id=new_message_id(_T0 + 5),
            client="app",
            sender="app@rail.example",
            recipients=("a@nomx.example",),
            data=b"Subject: hi\r\n\r\nhello\r\n",
            channel="api",
            received_at=_T0 + 5,
        )
        await store.accept(bare)
        await store.record(
            JobResult(
                bare.id, _T0 + 6, (RecipientUpdate(0, "deferred", "451 4.4.3 DNS", None, _T0 + 66),)
            )
        )
        inbound = InboundMessage(
            id=new_message_id(_T0 + 7),
            sender="someone@example.org",
            targets=(WebhookTarget("app", "https://app.example/hook", ("in@rail.example",)),),
            data=b"Subject: in\r\n\r\nhi\r\n",
            received_at=_T0 + 7,
            subject="in",
            authentication={},
            bounce_allowed=False,
        )
        await store.accept_inbound(inbound)
        await store.record_webhook(
            WebhookResult(inbound.id, "app", _T0 + 8, "failed", "HTTP 410 Gone")
        )

        # An operator's bounce and delete (rail queue bounce, delete).
        ended = [
            NewMessage(
                id=new_message_id(_T0 + 9 + n),
                client="app",
                sender="app@rail.example",
                recipients=("late@example.net",),
                data=b"Subject: hi\r\n\r\nhello\r\n",
                channel="api",
                received_at=_T0 + 9 + n,
            )
            for n in range(2)
        ]
        for one in ended:
            await store.accept(one)
        await store.bounce(ended[0].id, _T0 + 12, "ops", "spam trap", None)
        await store.delete(ended[1].id, _T0 + 12, "ops", "sent twice")
        # A message that could not be prepared (quarantined by the scheduler).
        unprepared = attrs.evolve(ended[0], id=new_message_id(_T0 + 13), received_at=_T0 + 13)
        await store.accept(unprepared)
        await store.quarantine(
            unprepared.id, "error", "preparing the message failed (ValueError)", _T0 + 14
        )

        payloads = await stored_payloads(store)
        self.assertEqual(
            sorted({p["type"] for p in payloads}),
            sorted(
                {
                    "message.accepted",
                    "message.delivered",
                    "message.deferred",
                    "message.bounced",
                    "message.expired",
                    "message.deleted",
                    "message.failed",
                    "inbound.failed",
                }
            ),
        )
        self.assertEqual(
            sorted(p["details"]["source"] for p in payloads if p["type"] == "message.bounced"),
            ["expired", "operator", "smtp"],
        )
        for payload in payloads:
            jsonschema.validate(payload, _schema(payload["type"]), jsonschema.Draft202012Validator)
        first = payloads[0]
        self.assertEqual(
            (first["request_id"], first["tag"], first["metadata"]),
            ("order-42", "receipts", {"order": "42"}),
        )
        broken = dict(first, details={"from": "app@rail.example", "channel": "fax"})
        with self.assertRaises(jsonschema.ValidationError):
            jsonschema.validate(broken, _schema(first["type"]), jsonschema.Draft202012Validator)


class ExampleTests(SynchronousTestCase):
    """The verification examples of docs/events/examples accept a body Rail signed (with
    the current time, as they check it) and refuse the same body changed by one byte."""

    def setUp(self) -> None:
        self.key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        body = {
            "type": "message.delivered",
            "id": new_message_id(time.time()),
            "timestamp": _rfc3339(time.time()),
            "client": "shop.example",
            "message_id": new_message_id(time.time()),
            "request_id": None,
            "tag": None,
            "metadata": {},
            "recipient": "a@example.net",
            "sandbox": False,
            "details": {
                "mx": "mx.example.net",
                "address": "192.0.2.7",
                "tls": "TLSv1.3",
                "reply": "250 2.0.0 Ok: caf\u00e9",
                "attempt": 1,
                "delay": 1.5,
            },
        }
        self.event_id = body["id"]
        self.body = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        headers = webhook_headers(self.key, self.event_id, time.time(), self.body, "shop.example")
        (self.directory / "headers.json").write_text(json.dumps(headers))
        (self.directory / "body").write_bytes(self.body)
        (self.directory / "tampered").write_bytes(self.body.replace(b'"attempt":1', b'"attempt":2'))

    def run_example(self, command: list[str], key: str, body: str = "body") -> tuple[int, str]:
        done = subprocess.run(
            [*command, key, str(self.directory / "headers.json"), str(self.directory / body)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **self.env()},
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def env(self) -> dict[str, str]:
        cache = self.directory / "go"
        return {
            "GOCACHE": str(cache / "cache"),
            "GOPATH": str(cache / "path"),
            "GO111MODULE": "off",
        }

    def check(self, command: list[str], key: str) -> None:
        code, output = self.run_example(command, key)
        self.assertEqual((code, output.strip()), (0, f"ok message.delivered {self.event_id}"))
        code, output = self.run_example(command, key, "tampered")
        self.assertEqual(code, 1, output)
        self.assertIn("rejected", output)

    def secret(self) -> str:
        return self.key.client_secret_text("shop.example")

    def test_python(self) -> None:
        """verify.py (the standardwebhooks package) checks the client's v1 signature."""
        self.check([sys.executable, str(_EXAMPLES / "verify.py")], self.secret())

    def test_node(self) -> None:
        """verify.js (node's crypto) checks v1 with the secret and v1a with the public key."""
        node = need_tool("node", "nodejs")
        self.check([node, str(_EXAMPLES / "verify.js")], self.secret())
        self.check([node, str(_EXAMPLES / "verify.js")], self.key.public_text)

    def test_go(self) -> None:
        """verify.go (the Go standard library) checks v1 with the secret and v1a with the
        public key."""
        go = need_tool("go", "golang-go")
        self.check([go, "run", str(_EXAMPLES / "verify.go")], self.secret())
        self.check([go, "run", str(_EXAMPLES / "verify.go")], self.key.public_text)

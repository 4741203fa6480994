"""``/api/v1/suppressions`` and ``/api/v1/admin/suppressions`` over Twisted's HTTP parser
with certificates from a test CA; and what a send answers about suppressed recipients."""

from __future__ import annotations

import json
from typing import Any

from twisted.web.resource import Resource

from rail.refusals import Refusals
from rail.store.suppressions import Suppression
from rail.web.admin import MAX_REASON, AdminResource
from rail.web.messagelist import MessagesResource
from rail.web.send import Send
from rail.web.site import RailSite
from rail.web.suppressions import SuppressionsResource
from tests.store.test_deliveries import _dsn_for
from tests.web.test_admin import _AdminSite
from tests.web.test_send import HOSTNAME, NOW, document


class _SuppressionSite(_AdminSite):
    def setUp(self) -> None:
        super().setUp()
        self.refusals = Refusals(self.clock)

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
                refusals=self.refusals,
            ),
        )
        v1.putChild(b"messages", MessagesResource(self.store))
        v1.putChild(b"suppressions", SuppressionsResource(self.store, self.clock, admin=False))
        admin = AdminResource(self.store, self.clock, _dsn_for)
        admin.putChild(b"suppressions", SuppressionsResource(self.store, self.clock, admin=True))
        v1.putChild(b"admin", admin)
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        return RailSite(root, max_body=4 * 1024 * 1024, idle_timeout=60.0, clock=self.clock)

    def call(self, method: str, path: str, body: Any = None, certificate: Any = "mine") -> Any:
        raw = b"" if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if body is not None else None
        return self.request(method, path, raw, headers, certificate=certificate)


class ClientListTests(_SuppressionSite):
    def test_add_look_up_remove(self) -> None:
        """A client adds an address (201, reason manual, source api, its text as detail),
        adding it again answers 200 with the first entry, it reads back in any case and
        percent-encoded, and removing it twice answers 200 then 404."""
        added = self.call(
            "POST", "/api/v1/suppressions", {"address": "Bob@Example.com", "reason": "asked"}
        )
        self.assertEqual(added.status, 201)
        entry = {
            "address": "bob@example.com",
            "reason": "manual",
            "source": "api",
            "message_id": None,
            "detail": "asked",
            "created_at": "2026-03-28T12:00:00Z",
        }
        self.assertEqual(added.json(), entry)
        self.clock.advance(60)
        again = self.call("POST", "/api/v1/suppressions", {"address": "bob@example.com"})
        self.assertEqual((again.status, again.json()), (200, entry))
        found = self.call("GET", "/api/v1/suppressions/BOB%40example.com")
        self.assertEqual((found.status, found.json()), (200, entry))
        removed = self.call("DELETE", "/api/v1/suppressions/bob@example.com")
        self.assertEqual(removed.json(), {"address": "bob@example.com", "removed": True})
        gone = self.call("DELETE", "/api/v1/suppressions/bob@example.com")
        self.assertEqual(gone.error(), (404, "NOT_FOUND"))
        self.assertEqual(
            self.call("GET", "/api/v1/suppressions/bob@example.com").error(), (404, "NOT_FOUND")
        )

    def test_pages_and_search(self) -> None:
        """The list is newest first in pages chained by ``next_cursor``; ``q`` and
        ``prefix`` search; another client sees none of it."""
        for index, address in enumerate(("ann@a.example", "bob@b.example", "bo@c.example")):
            self.store.suppressions[("myapp", address)] = Suppression(
                "myapp", address, "hard_bounce", "dsn", NOW + index, "01SOURCE"
            )
        first = self.call("GET", "/api/v1/suppressions?limit=2").json()
        self.assertEqual(
            [e["address"] for e in first["suppressions"]], ["bo@c.example", "bob@b.example"]
        )
        self.assertEqual(first["suppressions"][0]["message_id"], "01SOURCE")
        rest = self.call("GET", f"/api/v1/suppressions?limit=2&cursor={first['next_cursor']}")
        self.assertEqual(
            rest.json(),
            {"suppressions": [rest.json()["suppressions"][0]], "next_cursor": None},
        )
        self.assertEqual(rest.json()["suppressions"][0]["address"], "ann@a.example")
        found = self.call("GET", "/api/v1/suppressions?q=B.EXAMPLE").json()
        self.assertEqual([e["address"] for e in found["suppressions"]], ["bob@b.example"])
        prefixed = self.call("GET", "/api/v1/suppressions?prefix=bo").json()
        self.assertEqual(
            [e["address"] for e in prefixed["suppressions"]], ["bo@c.example", "bob@b.example"]
        )
        other = self.call("GET", "/api/v1/suppressions", certificate=self.other_certificate)
        self.assertEqual(other.json(), {"suppressions": [], "next_cursor": None})

    def test_bad_input(self) -> None:
        """Every malformed request is 400 INVALID_REQUEST naming the problem, and lists
        nothing; a trailing slash is the list itself."""
        for body in (
            {},
            {"address": "no-at-sign"},
            {"address": "a b@example.com"},
            {"address": "<a@example.com>"},
            {"address": 7},
            {"address": "a@" + "x" * 400},
            {"address": "a@example.com", "reason": "r" * (MAX_REASON + 1)},
            {"address": "a@example.com", "reason": "line\nbreak"},
            {"address": "a@example.com", "source": "cli"},
            {"address": "a@example.com", "extra": 1},
        ):
            response = self.call("POST", "/api/v1/suppressions", body)
            self.assertEqual(response.error(), (400, "INVALID_REQUEST"), body)
        raw = self.request("POST", "/api/v1/suppressions", b"[not json")
        self.assertEqual(raw.error(), (400, "INVALID_REQUEST"))
        for query in (
            "limit=0",
            "limit=501",
            "cursor=garbage",
            "q=a&prefix=b",
            "colour=red",
            "client=otherapp",
            "q=",
        ):
            response = self.call("GET", f"/api/v1/suppressions?{query}")
            self.assertEqual(response.error(), (400, "INVALID_REQUEST"), query)
        self.assertEqual(self.store.suppressions, {})
        self.assertEqual(
            self.call("PUT", "/api/v1/suppressions", {}).error(), (405, "METHOD_NOT_ALLOWED")
        )
        listed = self.call("GET", "/api/v1/suppressions/")
        self.assertEqual(listed.json(), {"suppressions": [], "next_cursor": None})

    def test_certificates(self) -> None:
        """No certificate is 401; an admin certificate on a client's list is 403
        NOT_A_CLIENT; a client certificate on the admin path is 403 ADMIN_REQUIRED."""
        self.assertEqual(
            self.call("GET", "/api/v1/suppressions", certificate=None).error(),
            (401, "CLIENT_CERTIFICATE_REQUIRED"),
        )
        self.assertEqual(
            self.call("GET", "/api/v1/suppressions", certificate=self.admin).error(),
            (403, "NOT_A_CLIENT"),
        )
        self.assertEqual(
            self.call("GET", "/api/v1/admin/suppressions?client=myapp").error(),
            (403, "ADMIN_REQUIRED"),
        )


class AdminListTests(_SuppressionSite):
    def test_admin_acts_on_a_clients_list(self) -> None:
        """An admin adds to and removes from the list ``client`` names, with source
        ``admin`` (or ``cli``); the client sees the change; ``client`` is required."""
        base = "/api/v1/admin/suppressions"
        self.assertEqual(
            self.call("GET", base, certificate=self.admin).error(), (400, "INVALID_REQUEST")
        )
        added = self.call(
            "POST",
            f"{base}?client=myapp",
            {"address": "x@example.com", "source": "cli"},
            certificate=self.admin,
        )
        self.assertEqual((added.status, added.json()["source"]), (201, "cli"))
        mine = self.call("GET", "/api/v1/suppressions").json()
        self.assertEqual([e["address"] for e in mine["suppressions"]], ["x@example.com"])
        listed = self.call("GET", f"{base}?client=myapp", certificate=self.admin).json()
        self.assertEqual(listed["suppressions"], mine["suppressions"])
        removed = self.call("DELETE", f"{base}/x@example.com?client=myapp", certificate=self.admin)
        self.assertEqual(removed.status, 200)
        self.assertEqual(self.store.suppressions, {})

    def test_admin_source_is_admin_or_cli(self) -> None:
        """On the admin path ``source`` is ``admin`` or ``cli`` (docs/api.md): ``api``,
        which only a client's own request makes, is refused and nothing is added."""
        answer = self.call(
            "POST",
            "/api/v1/admin/suppressions?client=myapp",
            {"address": "x@example.com", "source": "api"},
            certificate=self.admin,
        )
        self.assertEqual(answer.error(), (400, "INVALID_REQUEST"))
        self.assertEqual(self.store.suppressions, {})


class SendSuppressedTests(_SuppressionSite):
    def test_send_lists_suppressed(self) -> None:
        """A send to a suppressed address is 202 with it under ``suppressed`` (with the
        list's reason); the status shows it ``suppressed``; a replay answers the same."""
        self.store.suppressions[("myapp", "carl@example.com")] = Suppression(
            "myapp", "carl@example.com", "complaint", "arf", NOW - 10
        )
        response = self.post(document(request_id="r-1"))
        body = response.json()
        self.assertEqual(response.status, 202)
        self.assertEqual(
            body,
            {
                "id": body["id"],
                "status": "queued",
                "recipients": 2,
                "suppressed": [{"address": "carl@example.com", "reason": "complaint"}],
            },
        )
        status = self.call("GET", f"/api/v1/messages/{body['id']}").json()
        self.assertEqual(
            [(r["address"], r["status"]) for r in status["recipients"]],
            [("bob@example.com", "queued"), ("carl@example.com", "suppressed")],
        )
        replay = self.post(document(request_id="r-1"))
        self.assertEqual((replay.status, replay.json()), (202, body))
        self.assertEqual(replay.headers["idempotent-replayed"], "true")

    def test_all_suppressed(self) -> None:
        """A send whose every recipient is suppressed is still 202 and recorded, and its
        status is ``suppressed`` at once."""
        for address in ("bob@example.com", "carl@example.com"):
            self.store.suppressions[("myapp", address)] = Suppression(
                "myapp", address, "manual", "api", NOW
            )
        body = self.post(document()).json()
        self.assertEqual(len(body["suppressed"]), 2)
        status = self.call("GET", f"/api/v1/messages/{body['id']}").json()
        self.assertEqual(status["status"], "suppressed")

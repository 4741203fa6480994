"""``/api/v1/admin/clients/{name}/events`` over Twisted's HTTP parser, with real
certificates and a real registry behind an EventWatch (its thread run inline)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.web.resource import Resource

from rail.events.subscriptions import Subscriptions
from rail.pki.clientevents import ClientEvents
from rail.pki.eventwatch import EventWatch
from rail.pki.registry import CertificateRecord, Registry, RegistryError, registry_path
from rail.web.clientevents import ClientEventsResource
from rail.web.site import RailSite
from tests.pki.helpers import NOW as CERT_NOW
from tests.pki.helpers import issue_client, make_ca
from tests.web.test_admin import _AdminSite


class ClientEventsAPITests(_AdminSite):
    def setUp(self) -> None:
        super().setUp()
        self.path = registry_path(Path(self.mktemp()))
        self.path.parent.mkdir()
        certificate, _ = issue_client(make_ca(), name="myapp")
        with Registry.open(self.path) as registry:
            registry.add(CertificateRecord.from_certificate(certificate, CERT_NOW))
        self.installed: list[Subscriptions] = []
        self.watch = EventWatch(
            self.path,
            self.installed.append,
            clock=self.clock,
            in_thread=lambda f: maybeDeferred(f),
            now=lambda: CERT_NOW,
            allow_http_loopback=lambda: False,
        )
        self.watch.load()
        self.addCleanup(lambda: self.successResultOf(self.watch.stopService()))

    def site(self) -> RailSite:
        admin = Resource()
        admin.putChild(b"clients", ClientEventsResource(self.watch))
        v1 = Resource()
        v1.putChild(b"admin", admin)
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        return RailSite(root, max_body=1024 * 1024, idle_timeout=60.0, clock=self.clock)

    def put(self, body: Any, name: str = "myapp") -> Any:
        return self.admin_request("PUT", f"/api/v1/admin/clients/{name}/events", body)

    def test_get_and_put(self) -> None:
        """GET shows the settings (none at first); PUT replaces them and answers once
        the running store filters by them."""
        path = "/api/v1/admin/clients/myapp/events"
        response = self.admin_request("GET", path)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json(), {"client": "myapp", "types": [], "url": None})
        response = self.put({"types": ["message.bounced"], "url": "https://myapp.example/ev"})
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.json(),
            {"client": "myapp", "types": ["message.bounced"], "url": "https://myapp.example/ev"},
        )
        self.assertTrue(self.installed[-1].wants("myapp", "message.bounced"))
        self.assertEqual(self.admin_request("GET", path).json()["types"], ["message.bounced"])
        response = self.put({"types": []})
        self.assertEqual(response.json(), {"client": "myapp", "types": [], "url": None})
        self.assertFalse(self.installed[-1].wants("myapp", "message.bounced"))

    def test_unknown_type(self) -> None:
        """An unknown type is 400 INVALID_REQUEST naming it; nothing changes."""
        response = self.put({"types": ["all", "message.clicked"]})
        self.assertEqual(response.status, 400)
        error = response.json()["error"]
        self.assertEqual(error["code"], "INVALID_REQUEST")
        self.assertIn("types: unknown event type 'message.clicked'", error["message"])
        self.assertEqual(self.installed, [])

    def test_bad_bodies(self) -> None:
        """A body that is not an object with a list of names (and an optional URL) is
        400 INVALID_REQUEST saying what is wrong."""
        for body, expected in [
            (b"nope", "not valid JSON"),
            (json.dumps(["all"]).encode(), "JSON object"),
            (json.dumps({"types": "all"}).encode(), "types: a list"),
            (json.dumps({"types": ["all"], "url": 5}).encode(), "url: a URL or null"),
            (json.dumps({"types": ["all"], "tags": []}).encode(), "unknown field 'tags'"),
            (json.dumps({"types": ["all"], "url": "http://x.example/"}).encode(), "url 'http"),
        ]:
            response = self.request(
                "PUT", "/api/v1/admin/clients/myapp/events", body, certificate=self.admin
            )
            self.assertEqual(response.status, 400, body)
            self.assertIn(expected, response.json()["error"]["message"])

    def test_unknown_client(self) -> None:
        """A client no certificate names is 404 NOT_FOUND, for GET and PUT."""
        self.assertEqual(
            self.admin_request("GET", "/api/v1/admin/clients/ghost/events").status, 404
        )
        response = self.put({"types": ["all"]}, name="ghost")
        self.assertEqual((response.status, response.json()["error"]["code"]), (404, "NOT_FOUND"))

    def test_admin_only(self) -> None:
        """No certificate is 401; a client (application) certificate is 403, even for
        its own settings."""
        path = "/api/v1/admin/clients/myapp/events"
        self.assertEqual(self.request("GET", path, certificate=None).status, 401)
        response = self.request("PUT", path, b'{"types": ["all"]}')
        self.assertEqual(
            (response.status, response.json()["error"]["code"]), (403, "ADMIN_REQUIRED")
        )
        self.assertEqual(self.installed, [])


class _Broken:
    """A registry that cannot be read or written."""

    def settings(self, name: str) -> Deferred[ClientEvents]:
        return fail(RegistryError("registry.sqlite3: disk I/O error"))

    def change(self, name: str, types: Iterable[str], url: str | None) -> Deferred[ClientEvents]:
        return fail(RegistryError("registry.sqlite3: disk I/O error"))


class RegistryDownTests(_AdminSite):
    def site(self) -> RailSite:
        admin = Resource()
        admin.putChild(b"clients", ClientEventsResource(_Broken()))
        v1 = Resource()
        v1.putChild(b"admin", admin)
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        return RailSite(root, max_body=1024 * 1024, idle_timeout=60.0, clock=self.clock)

    def test_registry_down(self) -> None:
        """A registry failure is 503 REGISTRY_UNAVAILABLE with Retry-After, for GET and
        PUT."""
        for method, body in [("GET", None), ("PUT", {"types": ["all"]})]:
            response = self.admin_request(method, "/api/v1/admin/clients/myapp/events", body)
            self.assertEqual(response.status, 503)
            self.assertEqual(response.json()["error"]["code"], "REGISTRY_UNAVAILABLE")
            self.assertEqual(response.headers.get("retry-after"), "60")


class _Other(Resource):
    """Another resource over the clients: answers every path it is given."""

    def getChild(self, path: bytes, request: Any) -> Resource:
        leaf = Resource()
        leaf.isLeaf = True
        leaf.render = lambda request: b"other " + path + b"/" + b"/".join(request.postpath)  # type: ignore[method-assign]
        return leaf


class SharedClientsTests(_AdminSite):
    def site(self) -> RailSite:
        admin = Resource()
        admin.putChild(b"clients", ClientEventsResource(_Broken(), other=_Other()))
        v1 = Resource()
        v1.putChild(b"admin", admin)
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        return RailSite(root, max_body=1024 * 1024, idle_timeout=60.0, clock=self.clock)

    def test_other_paths_go_to_the_other_resource(self) -> None:
        """``{name}/events`` is this resource's; any other path under a client goes to
        the resource it shares ``/api/v1/admin/clients`` with."""
        response = self.admin_request("POST", "/api/v1/admin/clients/myapp/webhook-secret/rotate")
        self.assertEqual(response.body, b"other myapp/webhook-secret/rotate")
        response = self.admin_request("GET", "/api/v1/admin/clients/myapp/events")
        self.assertEqual(response.json()["error"]["code"], "REGISTRY_UNAVAILABLE")

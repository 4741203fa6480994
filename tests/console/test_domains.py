"""The console over Twisted's HTTP parser with real certificates: the Domains page (the
records, and the doctor's checks behind a CSRF-protected POST, one run shared) and the
methods and paths every page answers."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from twisted.internet.defer import Deferred, succeed
from twisted.web.resource import Resource

from rail.console.resource import Console, ConsoleSources
from rail.web.site import RailSite
from tests.web.test_admin import _AdminSite


class DomainsPageTests(_AdminSite):
    def setUp(self) -> None:
        super().setUp()
        self.runs: list[Deferred[Any]] = []
        self._site: RailSite | None = None

    def report(self, domain: str | None) -> Deferred[Any]:
        run: Deferred[Any] = Deferred()
        self.runs.append(run)
        return run

    def site(self) -> RailSite:
        """One site (one console) for every connection of the test."""
        if self._site is not None:
            return self._site
        sources = ConsoleSources(
            store=self.store,
            clock=self.clock,
            secret=b"k" * 32,
            records=lambda: succeed("rail.test. 300 IN MX 10 rail.test."),
            domains=self.report,
        )
        root = Resource()
        root.putChild(b"console", Console(sources))
        self._site = RailSite(root, max_body=1024 * 1024, idle_timeout=60.0, clock=self.clock)
        return self._site

    def test_checks_need_a_post_with_the_token_and_share_a_run(self) -> None:
        """The page shows the records and a form, not verdicts; a POST without the token
        starts nothing (403); two POSTs with it while a run is under way share that one
        run and both show its verdicts."""
        page = self.request("GET", "/console/domains", certificate=self.admin)
        self.assertEqual(page.status, 200)
        self.assertIn(b"rail.test. 300 IN MX 10 rail.test.", page.body)
        found = re.search(rb'name="csrf" value="([0-9a-f]{64})"', page.body)
        assert found is not None
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        refused = self.request(
            "POST", "/console/domains/check", b"", headers, certificate=self.admin
        )
        self.assertEqual(refused.status, 403)
        self.assertEqual(self.runs, [])
        body = urlencode({"csrf": found.group(1).decode()}).encode()
        first = self.connect(self.admin)
        second = self.connect(self.admin)
        for connection in (first, second):
            connection.send("POST", "/console/domains/check", body, headers)
        self.assertEqual(len(self.runs), 1)
        verdict = {"check": "MX", "domain": "rail.test", "status": "FAIL", "expected": "x"}
        self.runs[0].callback({"counts": {"FAIL": 1}, "checks": [{**verdict, "found": "<none>"}]})
        for connection in (first, second):
            response = connection.response()
            self.assertEqual(response.status, 200)
            self.assertIn(b"<td>MX</td><td>rail.test</td><td>FAIL</td>", response.body)
            self.assertIn(b"&lt;none&gt;", response.body)

    def test_failed_run_is_shown(self) -> None:
        """A run that fails says so on the page instead of an empty table."""
        page = self.request("GET", "/console/domains", certificate=self.admin)
        found = re.search(rb'name="csrf" value="([0-9a-f]{64})"', page.body)
        assert found is not None
        connection = self.connect(self.admin)
        connection.send(
            "POST",
            "/console/domains/check",
            urlencode({"csrf": found.group(1).decode()}).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.runs[0].errback(LookupError("no local domains"))
        response = connection.response()
        self.assertIn(b"The checks could not run: no local domains", response.body)

    def test_head_and_other_methods(self) -> None:
        """HEAD answers like GET without a body; another method is 405 with Allow; the
        path without its slash redirects to the overview."""
        connection = self.connect(self.admin)
        connection.send("HEAD", "/console/domains")
        head = connection.response(head_request=True)
        self.assertEqual((head.status, head.body), (200, b""))
        self.assertEqual(head.headers["content-type"], "text/html; charset=utf-8")
        other = self.request("DELETE", "/console/domains", certificate=self.admin)
        self.assertEqual((other.status, other.headers["allow"]), (405, "GET, POST"))
        bare = self.request("GET", "/console", certificate=self.admin)
        self.assertEqual((bare.status, bare.headers["location"]), (301, "/console/"))

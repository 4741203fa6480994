"""The suppression list, batch send and metadata against a running server over real
HTTPS with client certificates (mTLS), and ``rail suppressions`` as a real process."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import inlineCallbacks

from tests.integration.processes import rail
from tests.integration.test_queue_cli import _RunningRail


class SuppressionWireTests(_RunningRail):
    def suppressions(self, *args: str) -> Any:
        """``rail suppressions ARGS`` against this server; fires with (out, err, code)."""
        url = f"https://127.0.0.1:{self.port}"
        return rail("suppressions", *args, "--config", str(self.config_path), "--url", url)

    def post_json(self, path: str, document: Any) -> Any:
        return self.request(
            "POST",
            path,
            cert=self.app.pair,
            body=json.dumps(document).encode(),
            extra_headers={"Content-Type": "application/json"},
        )

    @inlineCallbacks
    def test_list_then_batch_then_cli(self) -> Any:
        """The app lists an address over mTLS; a batch to it and another address is one
        202 per item, the listed one under ``suppressed`` and ``suppressed`` in the status,
        with the tag echoed; ``rail suppressions`` then lists, adds, shows and removes."""
        added = yield self.post_json("/api/v1/suppressions", {"address": "gone@example.com"})
        self.assertEqual(added.status, 201, added.body)
        message = {"from": "app@rail.test", "subject": "s", "body_text": "b", "tag": "t1"}
        response = yield self.post_json(
            "/api/v1/send/batch",
            {
                "messages": [
                    dict(message, to=["gone@example.com", "bob@example.com"], request_id="1"),
                    dict(message, to=["carl@example.com"], request_id="2"),
                    dict(message, to=["dan@example.com"], request_id="1"),
                ]
            },
        )
        self.assertEqual(response.status, 200, response.body)
        results = json.loads(response.body)["results"]
        self.assertEqual([r["status"] for r in results], [202, 202, 400])
        self.assertEqual(
            results[0]["suppressed"], [{"address": "gone@example.com", "reason": "manual"}]
        )
        self.assertEqual(results[2]["error"]["code"], "DUPLICATE_REQUEST_ID")
        status = yield self.request(
            "GET", f"/api/v1/messages/{results[0]['id']}", cert=self.app.pair
        )
        document = json.loads(status.body)
        self.assertEqual(
            [(r["address"], r["status"]) for r in document["recipients"]],
            [("gone@example.com", "suppressed"), ("bob@example.com", "queued")],
        )
        self.assertEqual((document["tag"], document["request_id"]), ("t1", "1"))
        listed = yield self.request("GET", "/api/v1/messages?tag=t1", cert=self.app.pair)
        self.assertEqual(len(json.loads(listed.body)["messages"]), 2)

        out, err, code = yield self.suppressions("list", "--client", "app", "--json")
        self.assertEqual(code, 0, err)
        self.assertEqual(
            [e["address"] for e in json.loads(out)["suppressions"]], ["gone@example.com"]
        )
        out, err, code = yield self.suppressions(
            "add", "--client", "app", "New@Example.com", "--reason", "asked by phone"
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"new@example.com: suppressed for app", out)
        out, err, code = yield self.suppressions("show", "--client", "app", "new@example.com")
        self.assertEqual(code, 0, err)
        entry = json.loads(out)
        self.assertEqual(
            (entry["reason"], entry["source"], entry["detail"]), ("manual", "cli", "asked by phone")
        )
        out, err, code = yield self.suppressions("list", "--client", "app", "--search", "new")
        self.assertEqual(code, 0, err)
        self.assertIn(b"new@example.com", out)
        self.assertNotIn(b"gone@example.com", out)
        out, err, code = yield self.suppressions("remove", "--client", "app", "new@example.com")
        self.assertEqual(code, 0, err)
        out, err, code = yield self.suppressions("remove", "--client", "app", "new@example.com")
        self.assertEqual(code, 1)
        self.assertIn(b"404 NOT_FOUND", err)
        out, err, code = yield self.suppressions("add", "--client", "app", "not-an-address")
        self.assertEqual(code, 2)
        self.assertIn(b"400 INVALID_REQUEST", err)

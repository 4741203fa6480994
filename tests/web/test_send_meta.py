"""``tag`` and ``metadata`` on ``POST /api/v1/send``: bounds, storage with the request id,
echo in the status and the listing, and search by them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from rail.mail.meta import MAX_KEY, MAX_KEYS, MAX_TAG, MAX_VALUE
from rail.store.model import MessageMeta
from tests.web.test_send import document
from tests.web.test_suppressions import _SuppressionSite


class SendMetaTests(_SuppressionSite):
    def test_stored_and_echoed(self) -> None:
        """Tag, metadata and request_id are stored with the message and echoed by its
        status and by the listing."""
        metadata = {"order.id": "A-17", "user_id": "42"}
        body = self.post(document(tag="receipt", metadata=metadata, request_id="req-9")).json()
        message = self.store.messages[body["id"]]
        self.assertEqual(
            message.meta, MessageMeta(request_id="req-9", tag="receipt", metadata=metadata)
        )
        status = self.call("GET", f"/api/v1/messages/{body['id']}").json()
        self.assertEqual(
            {k: status[k] for k in ("request_id", "tag", "metadata")},
            {"request_id": "req-9", "tag": "receipt", "metadata": metadata},
        )
        [listed] = self.call("GET", "/api/v1/messages").json()["messages"]
        self.assertEqual(
            {k: listed[k] for k in ("request_id", "tag", "metadata")},
            {"request_id": "req-9", "tag": "receipt", "metadata": metadata},
        )

    def test_idempotency_key_header_is_the_request_id(self) -> None:
        """A request id given as the Idempotency-Key header is stored as the request_id."""
        body = self.post(document(), headers={"Idempotency-Key": "hdr-1"}).json()
        self.assertEqual(self.store.messages[body["id"]].meta.request_id, "hdr-1")

    def test_search(self) -> None:
        """The listing finds messages by tag, by every metadata pair given (either
        spelling) and by request id, only the caller's own."""
        first = self.post(document(tag="a", metadata={"k": "1", "j": "x"})).json()["id"]
        second = self.post(document(tag="b", metadata={"k": "1"}, request_id="r2")).json()["id"]
        self.post(document(tag="a"), certificate=self.other_certificate)

        def ids(query: str) -> list[str]:
            response = self.call("GET", f"/api/v1/messages?{query}")
            self.assertEqual(response.status, 200, response.body)
            return [m["id"] for m in response.json()["messages"]]

        self.assertEqual(ids("tag=a"), [first])
        self.assertEqual(ids(f"{quote('metadata[k]')}=1"), [second, first])
        self.assertEqual(ids("metadata.k=1&metadata.j=x"), [first])
        self.assertEqual(ids("metadata.k=2"), [])
        self.assertEqual(ids("request_id=r2"), [second])
        self.assertEqual(ids("tag=b&metadata.k=1"), [second])

    def test_bounds_refused(self) -> None:
        """Metadata or a tag beyond the bounds is 400 INVALID_REQUEST naming the field,
        counted as a refusal, and nothing is queued."""
        cases: list[tuple[dict[str, Any], str]] = [
            ({"metadata": {f"k{i}": "v" for i in range(MAX_KEYS + 1)}}, "metadata"),
            ({"metadata": {"k" * (MAX_KEY + 1): "v"}}, "metadata key"),
            ({"metadata": {"a b": "v"}}, "metadata key"),
            ({"metadata": {"k": "v" * (MAX_VALUE + 1)}}, "metadata.k"),
            ({"metadata": {"k": 1}}, "metadata.k"),
            ({"metadata": {"k": "a\nb"}}, "metadata.k"),
            ({"metadata": ["k"]}, "metadata"),
            ({"tag": "t" * (MAX_TAG + 1)}, "tag"),
            ({"tag": ""}, "tag"),
            ({"tag": 5}, "tag"),
            ({"tag": "a\x00b"}, "tag"),
        ]
        for change, field in cases:
            response = self.post(document(**change))
            self.assertEqual(response.error(), (400, "INVALID_REQUEST"), change)
            self.assertIn(field, response.json()["error"]["message"], change)
        self.assertEqual(self.store.messages, {})
        self.assertEqual(self.refusals.counts, {("https", "metadata"): len(cases)})

    def test_bad_search(self) -> None:
        """A metadata parameter with a bad key, a too long tag, or an unknown parameter
        is 400 INVALID_REQUEST."""
        for query in (
            f"{quote('metadata[a b]')}=1",
            f"{quote('metadata[]')}=1",
            "tag=" + "t" * (MAX_TAG + 1),
            "metadatum=1",
        ):
            response = self.call("GET", f"/api/v1/messages?{query}")
            self.assertEqual(response.error(), (400, "INVALID_REQUEST"), query)

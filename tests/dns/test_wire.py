"""Encoding responses within a size limit, and strict parsing of queries."""

from __future__ import annotations

from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from rail.dns.records import MX, TXT, A, Record
from rail.dns.wire import encode_response, parse_query, to_rr
from tests.dns.helpers import parse, query_bytes


class EncodeTests(SynchronousTestCase):
    def setUp(self) -> None:
        query = parse_query(query_bytes("example.com", dns.MX))
        assert query is not None
        self.query = query
        self.answers = [to_rr(Record("example.com", 60, MX(10, "mx.example.com")))]
        self.additional = [to_rr(Record("mx.example.com", 60, A("192.0.2.1"))) for _ in range(3)]

    def test_additional_dropped_first(self) -> None:
        """When only the additional section does not fit, it is dropped without TC."""
        whole = encode_response(
            self.query, 0, limit=512, answers=self.answers, additional=self.additional
        )
        limit = len(whole) - 1
        data = encode_response(
            self.query, 0, limit=limit, answers=self.answers, additional=self.additional
        )
        message = parse(data)
        self.assertEqual((message.trunc, len(message.answers), message.additional), (0, 1, []))

    def test_answer_not_split(self) -> None:
        """An RRset that does not fit is not cut: the answer is empty and TC set."""
        big = [to_rr(Record("example.com", 60, TXT(("x" * 200,)))) for _ in range(3)]
        message = parse(encode_response(self.query, 0, limit=512, answers=big))
        self.assertEqual((message.trunc, message.answers), (1, []))

    def test_strict_parse(self) -> None:
        """Trailing records announced but missing make the query unparseable."""
        data = bytearray(query_bytes("example.com"))
        data[11] = 1  # ARCOUNT 1, no record follows
        self.assertIsNone(parse_query(bytes(data)))
        self.assertIsNotNone(parse_query(query_bytes("example.com")))

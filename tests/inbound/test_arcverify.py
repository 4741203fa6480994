"""ARC chain validation of inbound mail (dkimpy's arc_verify behind Rail's DNS)."""

from __future__ import annotations

from typing import Any

import dkim
from twisted.trial.unittest import SynchronousTestCase

from rail.inbound.answers import DNSTemporaryError
from rail.inbound.arcverify import MAX_INSTANCES, verify_arc
from tests.forward.helpers import other_rsa_key

MESSAGE = b"From: <a@sender.example>\r\nTo: <b@rail.test>\r\nSubject: hi\r\n\r\nhello\r\n"
AR = b"Authentication-Results: mx.first.example; spf=pass smtp.mailfrom=sender.example\r\n"


class FakeLookup:
    def __init__(self, records: dict[str, bytes], fail: bool = False) -> None:
        self.records = records
        self.fail = fail

    def query(self, name: str, rtype: Any) -> tuple[Any, ...]:
        raise NotImplementedError

    def txt(self, name: str) -> tuple[bytes, ...]:
        if self.fail:
            raise DNSTemporaryError("timeout")
        found = self.records.get(name.rstrip("."))
        return () if found is None else (found,)


class ARCVerifyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pem, txt = other_rsa_key()
        self.records = {"s1._domainkey.first.example": txt.encode("ascii")}
        self.sealed = (
            b"".join(
                dkim.arc_sign(AR + MESSAGE, b"s1", b"first.example", self.pem, b"mx.first.example")
            )
            + MESSAGE
        )

    def test_none_without_sets(self) -> None:
        """A message without ARC-Seal is arc=none, without any look-up."""
        self.assertEqual(verify_arc(FakeLookup({}, fail=True), MESSAGE), ("none", 0))

    def test_pass(self) -> None:
        """A valid set verifies: arc=pass at instance 1."""
        self.assertEqual(verify_arc(FakeLookup(self.records), self.sealed), ("pass", 1))

    def test_fail_when_changed(self) -> None:
        """A sealed message changed afterwards fails."""
        changed = self.sealed.replace(b"Subject: hi", b"Subject: HI")
        self.assertEqual(verify_arc(FakeLookup(self.records), changed)[0], "fail")

    def test_temperror(self) -> None:
        """A key look-up that fails temporarily is temperror, not fail."""
        self.assertEqual(verify_arc(FakeLookup({}, fail=True), self.sealed)[0], "temperror")

    def test_too_many_sets(self) -> None:
        """More sets than MAX_INSTANCES fail without being verified."""
        seals = b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x; s=y; b=z\r\n" * (MAX_INSTANCES + 1)
        self.assertEqual(verify_arc(FakeLookup({}, fail=True), seals + MESSAGE)[0], "fail")

"""DKIM verification by dkimpy, keys fetched from a real DNS server on loopback.

The signed messages come from Rail's own outbound signer with keys from Rail's KeyStore,
so these tests also pin that what Rail sends, Rail (and dkimpy) accepts.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from rail.dkim.records import record_name
from rail.inbound.dkimverify import verify_dkim
from rail.inbound.model import DKIMResult
from tests.inbound.authsupport import key_records, message, rail_keys, signed, start, txt

DOMAIN = "example.test"


class DKIMTests(TestCase):
    timeout = 20

    async def verify(self, data: bytes, **kw: object) -> tuple[DKIMResult, ...]:
        keys = rail_keys(DOMAIN)
        records = {**key_records(keys), **kw.pop("records", {})}  # type: ignore[dict-item]
        fixture = await start(self, records, **kw)  # type: ignore[arg-type]
        return await fixture.run(verify_dkim, fixture.lookup, data)

    async def test_rail_signed_message_passes_both(self) -> None:
        """A message signed by Rail's outbound signer verifies: rsa-sha256 and
        ed25519-sha256 both pass, each described by d=, s=, a= and the start of b=."""
        keys = rail_keys(DOMAIN)
        results = await self.verify(signed(message(), keys))
        self.assertEqual(
            [(r.result, r.domain, r.selector, r.algorithm) for r in results],
            [
                ("pass", DOMAIN, keys.rsa_selector, "rsa-sha256"),
                ("pass", DOMAIN, keys.ed25519_selector, "ed25519-sha256"),
            ],
        )
        self.assertTrue(all(r.header_b and len(r.header_b) >= 8 for r in results))
        self.assertNotEqual(results[0].header_b, results[1].header_b)

    async def test_no_signature_is_empty(self) -> None:
        """An unsigned message has no results (dkim=none)."""
        self.assertEqual(await self.verify(message()), ())

    async def test_altered_body_fails(self) -> None:
        """A body changed after signing fails both signatures."""
        data = signed(message(), rail_keys(DOMAIN)).replace(b"Hello.", b"Hullo.")
        results = await self.verify(data)
        self.assertEqual([r.result for r in results], ["fail", "fail"])

    async def test_altered_header_fails(self) -> None:
        """A signed header field changed after signing fails both signatures."""
        data = signed(message(), rail_keys(DOMAIN)).replace(b"Your order", b"Your prize")
        self.assertEqual([r.result for r in await self.verify(data)], ["fail", "fail"])

    async def test_missing_key_is_permerror(self) -> None:
        """No key record at the selector is permerror."""
        keys = rail_keys(DOMAIN)
        data = signed(message(), keys)
        fixture = await start(self, {})
        results = await fixture.run(verify_dkim, fixture.lookup, data)
        self.assertEqual([r.result for r in results], ["permerror", "permerror"])

    async def test_bad_key_record_is_permerror(self) -> None:
        """A key record that does not parse is permerror; the other signature still passes."""
        keys = rail_keys(DOMAIN)
        bad = {record_name(keys.rsa_selector, DOMAIN): [txt("v=DKIM1; k=rsa; p=!!notbase64")]}
        results = await self.verify(signed(message(), keys), records=bad)
        self.assertEqual([r.result for r in results], ["permerror", "pass"])

    async def test_dns_failure_is_temperror(self) -> None:
        """SERVFAIL for the key is temperror."""
        keys = rail_keys(DOMAIN)
        name = record_name(keys.ed25519_selector, DOMAIN)
        results = await self.verify(signed(message(), keys), servfail=[name])
        self.assertEqual([r.result for r in results], ["pass", "temperror"])

    async def test_timeout_is_temperror(self) -> None:
        """A key query that is never answered is temperror."""
        keys = rail_keys(DOMAIN)
        name = record_name(keys.rsa_selector, DOMAIN)
        results = await self.verify(signed(message(), keys), silent=[name])
        self.assertEqual([r.result for r in results], ["temperror", "pass"])

    async def test_malformed_signature_is_permerror(self) -> None:
        """A signature missing required tags is permerror."""
        data = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=x\r\n" + message()
        results = await self.verify(data)
        self.assertEqual(
            [(r.result, r.domain, r.selector) for r in results],
            [("permerror", DOMAIN, "x")],
        )

    async def test_signatures_bounded(self) -> None:
        """Only the first five signatures are evaluated."""
        keys = rail_keys(DOMAIN)
        data = signed(message(), keys)
        for _ in range(3):
            data = signed(data, keys)
        self.assertEqual(len(await self.verify(data)), 5)

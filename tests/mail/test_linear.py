"""Every parser and builder over message bytes takes time linear in its input.

A poison message is one whose shape makes a quadratic step explode: 400,000 continuation
lines in one field, a 10 MB Subject, thousands of encoded words. For each function that
reads or writes header text, inputs of a random shape are built at size ``n`` and ``16 n``
and the best-of-N times compared: linear code takes about 16 times as long on the larger
one, quadratic code about 256 times. The assertion is on that ratio (below
:data:`MAX_RATIO`), never on a duration, so a slow or busy machine does not fail it.

Shapes are drawn at random (the seed is in every failure message), each size from the
same seed, so both inputs have the same shape.
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.bounces.reports import parse_report
from rail.delivery.dsn import _original_headers
from rail.dkim.canonical import relaxed_body, split_message
from rail.dkim.records import txt_value
from rail.dkim.sign import from_domain, sign
from rail.inbound.dkimverify import verify_dkim
from rail.inbound.dmarc import author_domain
from rail.inbound.model import WebhookJob
from rail.inbound.policy import decode_subject
from rail.inbound.results import remove_own_results
from rail.mail.addresses import Mailbox
from rail.mail.compose import compose
from rail.mail.headers import (
    ASCII_POLICY,
    UTF8_POLICY,
    HeaderLimits,
    completed,
    header_excess,
    parse_header_section,
    write_address_field,
    write_field,
)
from rail.mail.request import parse_request
from rail.policy.identity import ClientIdentity
from rail.webhooks.payload import webhook_body
from tests.dkim.helpers import KEYS, NOW

GROWTH = 16
MAX_RATIO = 64.0
"""Linear is ~16 for 16 times the input, quadratic ~256; 64 leaves room for a busy machine
(40 failed once in a full run beside other jobs)."""
ATTEMPTS = 5

_UNLIMITED = HeaderLimits(size=10**12, fields=10**12)
_IDENTITY = ClientIdentity(name="app", senders=("noreply@example.com",))
_WORDS = ("word", "wörd", "日本語", "=?utf-8?q?caf=C3=A9?=", "=?x?q?", "x" * 40, "", "(a)")


# Header sections of ``n`` octets or so, in shapes that hurt quadratic code.


def _continuations(n: int, rnd: random.Random) -> bytes:
    """One field folded over very many short lines (the 45-second SMTPS message)."""
    fold = rnd.choice([b"\r\n x", b"\r\n\t", b"\r\n  y z"])
    return b"X-Long: a" + fold * (n // len(fold)) + b"\r\n"


def _many_fields(n: int, rnd: random.Random) -> bytes:
    name = rnd.choice([b"X-F", b"Received", b"Subject"])
    return b"".join(name + b": v%d\r\n" % i for i in range(n // 12))


def _one_line(n: int, rnd: random.Random) -> bytes:
    char = rnd.choice([b"a", b" ", b"=?", b"(", b"\xc3\xa9"])
    return b"X-Line: " + char * (n // len(char)) + b"\r\n"


def _nested_comments(n: int, rnd: random.Random) -> bytes:
    depth = n // 2
    return b"Authentication-Results: " + b"(" * depth + b")" * depth + b" rail.test; none\r\n"


_SHAPES = [_continuations, _many_fields, _one_line, _nested_comments]
_FROM = b"From: App <noreply@example.com>\r\n"


def _messages() -> list[Callable[[int, random.Random], bytes]]:
    """A message maker per header shape."""

    def maker(shape: Callable[[int, random.Random], bytes]) -> Callable[..., bytes]:
        def make(n: int, rnd: random.Random) -> bytes:
            return _FROM + shape(n, rnd) + b"\r\nbody  \t line\r\n" * rnd.randint(1, 4)

        make.__name__ = shape.__name__
        return make

    return [maker(shape) for shape in _SHAPES]


_MESSAGES = _messages()


def _from_folded(n: int, rnd: random.Random) -> bytes:
    """A From field with very many continuation lines, or very many addresses."""
    if rnd.random() < 0.5:
        return b"From: App\r\n" + b" " * 0 + b"\r\n x" * (n // 4) + b" <a@example.com>\r\n\r\nb\r\n"
    addresses = b", ".join(b"a%d@example.com" % i for i in range(n // 16))
    return b"From: " + addresses + b"\r\n\r\nb\r\n"


def _texts() -> list[Callable[[int, random.Random], str]]:
    """Subject-like text makers: words of one kind each (ASCII, non-ASCII, encoded words,
    the prefixes of encoded words that never close), or one long word."""

    def maker(word: str) -> Callable[[int, random.Random], str]:
        def make(n: int, rnd: random.Random) -> str:
            if not word:
                return rnd.choice(["y", "é"]) * n
            separator = rnd.choice([" ", "  ", "\t"])
            return separator.join([word] * (n // (len(word) + len(separator))))

        make.__name__ = f"words {word!r}"
        return make

    return [maker(word) for word in _WORDS]


_TEXTS = _texts()


def _text(n: int, rnd: random.Random) -> str:
    return rnd.choice(_TEXTS)(n, rnd)


class _Lookup:
    """DNS for verification: the test keys' records."""

    def __init__(self) -> None:
        self._records = {
            f"{KEYS.rsa_selector}._domainkey.{KEYS.domain}": txt_value(KEYS.rsa_key.public_key()),
            f"{KEYS.ed25519_selector}._domainkey.{KEYS.domain}": txt_value(
                KEYS.ed25519_key.public_key()
            ),
        }

    def txt(self, name: str) -> tuple[bytes, ...]:
        record = self._records.get(name.rstrip("."))
        return () if record is None else (record.encode("ascii"),)

    def query(self, name: str, rtype: Any) -> tuple[Any, ...]:
        return ()


_KINDS = ("subject", "headers", "body", "alternative", "reply_to", "attachment")


def _requests() -> list[Callable[[int, random.Random], bytes]]:
    """A send-request maker per kind of large content."""

    def maker(kind: str) -> Callable[[int, random.Random], bytes]:
        def make(n: int, rnd: random.Random) -> bytes:
            return _request(n, rnd, kind)

        make.__name__ = f"request {kind}"
        return make

    return [maker(kind) for kind in _KINDS]


def _request(n: int, rnd: random.Random, kind: str) -> bytes:
    """A send request whose ``kind`` of content (header text or body) is about ``n``
    characters."""
    document: dict[str, Any] = {"from": "App <noreply@example.com>", "to": ["b@example.org"]}
    if kind == "subject":
        document["subject"] = _text(n, rnd)
    elif kind == "headers":
        document["headers"] = {f"X-H{i}": "v" * rnd.randint(1, 9) for i in range(n // 16)}
    elif kind == "body":
        line = rnd.choice(["plain text line", "ünïcödé line", "x" * 2000])
        document["body_text"] = "\n".join([line] * (n // len(line)))
    elif kind == "alternative":
        document["body_text"] = "text line ü\n" * (n // 12)
        document["body_html"] = "<p>html line ü</p>\n" * (n // 18)
    elif kind == "reply_to":
        names = ["Jörg Müller", "Plain Name", '"Quoted, Name"']
        document["reply_to"] = [f"{rnd.choice(names)} <r{i}@example.org>" for i in range(n // 40)]
    else:
        content = base64.b64encode(os.urandom(n)).decode("ascii")
        document["attachments"] = [{"filename": "f.bin", "content": content}]
    document.setdefault("body_text", "hi")
    return json.dumps(document).encode("utf-8")


def _compose(body: bytes) -> Any:
    return compose(
        body,
        None,
        _IDENTITY,
        message_id="01JDB3ZK4T8F6M5N9Q2R7S1V0W",
        hostname="rail.test",
        now=NOW,
        max_recipients=100,
        max_message_size=10**9,
        header_limits=_UNLIMITED,
    )


def _webhook(data: bytes) -> bytes:
    job = WebhookJob(
        message_id="m",
        client="app",
        url="https://app.example/hook",
        recipients=("a@rail.test",),
        sender="s@example.org",
        subject=decode_subject(parse_header_section(data).values("x-line")[0]),
        received_at=NOW,
        authentication={},
        bounce_allowed=True,
        attempts=0,
        data=data,
    )
    return webhook_body(job)


def _best_per_call(function: Callable[[Any], Any], argument: Any) -> float:
    """The least seconds per call seen over batches of calls, each batch long enough for
    the clock's resolution not to matter, for about 20 ms and at least 3 batches. Other
    work on the machine only ever adds time, so the least is the closest to the truth."""
    best = float("inf")
    spent = 0.0
    batches = 0
    calls = 1
    while batches < 3 or spent < 0.02:
        start = time.perf_counter()
        for _ in range(calls):
            function(argument)
        elapsed = time.perf_counter() - start
        if elapsed < 0.001:
            calls *= 2  # too short to time: a longer batch, not counted
            continue
        best = min(best, elapsed / calls)
        spent += elapsed
        batches += 1
    return best


class LinearTimeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.seed = int.from_bytes(os.urandom(4), "big")

    def assert_linear(
        self,
        function: Callable[[Any], Any],
        make: Callable[[int, random.Random], Any] | list[Callable[[int, random.Random], Any]],
        n: int,
    ) -> None:
        """Each maker (a shape) in turn, its parameters drawn from the test's seed."""
        for one in make if isinstance(make, list) else [make]:
            with self.subTest(shape=one.__name__):
                self._assert_linear(function, one, n)

    def _assert_linear(
        self,
        function: Callable[[Any], Any],
        make: Callable[[int, random.Random], Any],
        n: int,
    ) -> None:
        small = make(n, random.Random(self.seed))
        large = make(n * GROWTH, random.Random(self.seed))
        function(small)  # warm caches (regexes, the header registry)
        ratios = []
        # A busy machine can slow one measurement; quadratic code is slow in every one.
        for _ in range(ATTEMPTS):
            ratios.append(_best_per_call(function, large) / _best_per_call(function, small))
            if ratios[-1] < MAX_RATIO:
                return
        self.fail(
            f"{make.__name__}: {GROWTH}x input took {min(ratios):.0f}x the time at best"
            f" (seed {self.seed}; a quadratic step?)"
        )

    def test_split_message(self) -> None:
        """DKIM's header split, whatever the header's shape."""
        self.assert_linear(split_message, _MESSAGES, 64_000)

    def test_relaxed_body(self) -> None:
        """DKIM relaxed body canonicalization over lines with WSP runs."""
        self.assert_linear(
            relaxed_body,
            lambda n, rnd: (b"a \t  b" + b" " * rnd.randint(0, 900) + b"\r\n") * (n // 500),
            64_000,
        )

    def test_sign(self) -> None:
        """Signing (split, select, canonicalize, hash) a message of any header shape."""
        self.assert_linear(lambda data: sign(data, KEYS, NOW), _MESSAGES, 40_000)

    def test_from_domain(self) -> None:
        """The signing domain of a From folded over many lines or holding many addresses."""
        self.assert_linear(from_domain, _from_folded, 20_000)

    def test_parse_header_section(self) -> None:
        """Intake's header parse."""
        self.assert_linear(parse_header_section, _MESSAGES, 64_000)

    def test_header_excess(self) -> None:
        """The header cap's check reads the whole section when it is within the limits."""
        self.assert_linear(lambda data: header_excess(data, _UNLIMITED), _MESSAGES, 64_000)

    def test_completed(self) -> None:
        """Submission's completion (parse, then fields added)."""

        def complete(data: bytes) -> bytes:
            section = parse_header_section(data)
            return completed(data, section, prepend=["Received: x"], defaults=[("Date", "Date: d")])

        self.assert_linear(complete, _MESSAGES, 64_000)

    def test_remove_own_results(self) -> None:
        """Inbound's removal of forged Authentication-Results fields, nested comments and
        continuation lines included."""
        self.assert_linear(lambda data: remove_own_results(data, "rail.test"), _MESSAGES, 64_000)

    def test_author_domain(self) -> None:
        """DMARC's From parse."""
        self.assert_linear(author_domain, _from_folded, 20_000)

    def test_verify_dkim(self) -> None:
        """DKIM verification of a signed message with a long folded field and a body of
        lines with long runs of white space."""
        lookup = _Lookup()

        def make(n: int, rnd: random.Random) -> bytes:
            data = _FROM + _continuations(n // 2, rnd) + b"\r\n"
            data += (b"x" + b" " * 900 + b"y\r\n") * (n // 1800)
            return sign(data, KEYS, NOW) + data

        self.assert_linear(lambda data: verify_dkim(lookup, data), make, 20_000)

    def test_decode_subject(self) -> None:
        """The webhook Subject, whatever its encoded words."""
        self.assert_linear(decode_subject, _TEXTS, 4_000)

    def test_write_field(self) -> None:
        """A long Subject written for an ASCII or an SMTPUTF8 message."""
        for write_policy in (ASCII_POLICY, UTF8_POLICY):
            self.assert_linear(
                lambda text, p=write_policy: write_field("Subject", text, p), _TEXTS, 8_000
            )

    def test_write_address_field(self) -> None:
        """A long address list with display names that need quoting or encoding."""

        def make(n: int, rnd: random.Random) -> list[Mailbox]:
            name = rnd.choice(["Jörg Müller", "Plain", "A, B", ""])
            return [Mailbox(name, f"u{i}", "example.org") for i in range(n // 30)]

        self.assert_linear(lambda m: write_address_field("To", m, ASCII_POLICY), make, 3_000)

    def test_parse_request(self) -> None:
        """The API's request validation, encoded-word checks included."""
        self.assert_linear(parse_request, _requests(), 10_000)

    def test_compose(self) -> None:
        """The API's whole composition, for long header text, many fields, a long body
        or a large attachment."""
        self.assert_linear(_compose, _requests(), 10_000)

    def test_dsn_headers(self) -> None:
        """The original's header section returned in a DSN."""
        self.assert_linear(lambda data: _original_headers(data), _MESSAGES, 64_000)

    def test_webhook_body(self) -> None:
        """The inbound webhook payload: the Subject decoded, the message in base64."""
        self.assert_linear(
            _webhook, lambda n, rnd: b"X-Line: " + _text(n, rnd).encode() + b"\r\n\r\nb\r\n", 4_000
        )

    def test_parse_report(self) -> None:
        """Reading a bounce or complaint report (rail.bounces.reports), whatever its shape:
        a header section of any of the shapes above, very many recipient blocks, very many
        MIME parts, long folded fields in a block, a base64 machine part."""
        self.assert_linear(parse_report, [*_MESSAGES, *_REPORTS], 64_000)


def _report(top: bytes, parts: bytes) -> bytes:
    return (
        top + b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
        b"preamble\r\n" + parts + b"--B--\r\n"
    )


def _many_blocks(n: int, rnd: random.Random) -> bytes:
    block = b"Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
    return _report(
        b"",
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; m\r\n\r\n"
        + block * (n // len(block)),
    )


def _many_parts(n: int, rnd: random.Random) -> bytes:
    part = b"--B\r\nContent-Type: text/plain\r\n\r\n" + b"x" * rnd.randint(0, 20) + b"\r\n"
    return _report(b"", part * (n // len(part)))


def _folded_block(n: int, rnd: random.Random) -> bytes:
    return _report(
        b"",
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; m\r\n\r\n"
        b"Final-Recipient: rfc822; a@x\r\nDiagnostic-Code: smtp; 550"
        + b"\r\n  more" * (n // 8)
        + b"\r\nAction: failed\r\n",
    )


def _base64_part(n: int, rnd: random.Random) -> bytes:
    block = b"Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\n\r\n"
    encoded = base64.encodebytes(b"Reporting-MTA: dns; m\r\n\r\n" + block * (n // 80))
    return _report(
        b"",
        b"--B\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + encoded.replace(b"\n", b"\r\n"),
    )


_REPORTS = [_many_blocks, _many_parts, _folded_block, _base64_part]

"""Tests for ``rail.mail.compose``: JSON send request in, validated message bytes out."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.mail.addresses import Mailbox
from rail.mail.compose import Submission, authorize, build_message, compose
from rail.mail.request import ComposeError, SendRequest, fingerprint, parse_request
from rail.policy.identity import ClientIdentity
from rail.store.model import IdempotencyKey

NOW = 1774699200.0  # 2026-03-28T12:00:00Z
MESSAGE_ID = "01KMTBZ1G0ABCDEFGHJKMNPQRS"
HOSTNAME = "mail.rail.test"
IDENTITY = ClientIdentity(name="myapp", senders=("noreply@ataca.io", "alerts@smtp.ataca.io"))
_BARE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def _document(**changes: Any) -> dict[str, Any]:
    """A valid request, with fields added, replaced, or removed (value ``...``)."""
    document: dict[str, Any] = {
        "from": "noreply@ataca.io",
        "to": ["bob@example.com"],
        "subject": "Hello",
        "body_text": "Hi Bob",
    }
    document.update(changes)
    return {k: v for k, v in document.items() if v is not ...}


def _body(**changes: Any) -> bytes:
    return json.dumps(_document(**changes)).encode("utf-8")


def _parsed(header: str | None = None, **changes: Any) -> SendRequest:
    result = parse_request(_body(**changes), header)
    assert isinstance(result, SendRequest), result
    return result


def _error(body: bytes, header: str | None = None) -> ComposeError:
    result = parse_request(body, header)
    assert isinstance(result, ComposeError), result
    return result


def _compose(
    body: bytes,
    header: str | None = None,
    *,
    max_recipients: int = 100,
    max_message_size: int = 10 * 1024 * 1024,
) -> Submission | ComposeError:
    return compose(
        body,
        header,
        IDENTITY,
        message_id=MESSAGE_ID,
        hostname=HOSTNAME,
        now=NOW,
        max_recipients=max_recipients,
        max_message_size=max_message_size,
    )


def _submitted(**changes: Any) -> Submission:
    result = _compose(_body(**changes))
    assert isinstance(result, Submission), result
    return result


def _data(**changes: Any) -> bytes:
    return _submitted(**changes).message.data


def _email(data: bytes) -> EmailMessage:
    parsed = message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if not line[:1].isspace()]


class CanonicalTests(SynchronousTestCase):
    def assertCanonical(self, data: bytes) -> None:
        self.assertIsNone(_BARE_LINE_END.search(data), data)
        self.assertTrue(data.endswith(b"\r\n"))
        self.assertLessEqual(max(len(line) for line in data.split(b"\r\n")), 998)


class JSONTests(SynchronousTestCase):
    def test_not_json(self) -> None:
        """Bodies that are not UTF-8 JSON objects are INVALID_JSON (400)."""
        for body in (
            b"",
            b"not json",
            b"[1, 2]",
            b'"text"',
            b"null",
            b"\xff\xfe{}",
            b'{"from": "a@b.c",',
            b'{"subject": NaN}',
            b'{"subject": "\\ud800"}',
            b"[" * 100000,
        ):
            error = _error(body)
            self.assertEqual((error.code, error.http_status), ("INVALID_JSON", 400), body[:20])

    def test_unknown_field_is_named(self) -> None:
        """An unknown top-level field is INVALID_REQUEST naming the field, so typos like
        ``body`` for ``body_text`` are not silently dropped."""
        error = _error(_body(body="hello"))
        self.assertEqual((error.code, error.http_status), ("INVALID_REQUEST", 400))
        self.assertIn("'body'", error.message)

    def test_null_is_absent(self) -> None:
        """``null`` for an optional field means the field is absent."""
        request = _parsed(cc=None, subject=None, headers=None, attachments=None)
        self.assertEqual((request.cc, request.subject, request.headers), ((), None, ()))

    def test_field_types(self) -> None:
        """Each field must have its documented JSON type."""
        cases = {
            "from": 5,
            "to": "bob@example.com",
            "cc": {"a": "b"},
            "bcc": [1],
            "reply_to": 3,
            "subject": ["x"],
            "body_text": 1,
            "body_html": True,
            "headers": ["X-A: b"],
            "attachments": {"filename": "a"},
            "request_id": 12,
        }
        for field, value in cases.items():
            error = _error(_body(**{field: value}))
            self.assertEqual(error.code, "INVALID_REQUEST", field)
            self.assertIn(field, error.message)

    def test_from_required(self) -> None:
        """A request without ``from`` is refused."""
        self.assertIn("from is required", _error(_body(**{"from": ...})).message)

    def test_a_recipient_is_required(self) -> None:
        """At least one of to, cc and bcc must hold an address."""
        error = _error(_body(to=[], cc=[]))
        self.assertIn("at least one recipient", error.message)

    def test_any_recipient_field_suffices(self) -> None:
        """A message may go to cc or bcc only."""
        self.assertEqual(_parsed(to=..., bcc=["x@example.com"]).recipients, ("x@example.com",))

    def test_a_body_is_required(self) -> None:
        """At least one of body_text, body_html or attachments must be present."""
        error = _error(_body(body_text=...))
        self.assertIn("body_text, body_html or attachments", error.message)

    def test_attachments_alone_are_a_body(self) -> None:
        """A message may consist of attachments only."""
        attachment = {"filename": "a.txt", "content": "YQ=="}
        self.assertEqual(len(_parsed(body_text=..., attachments=[attachment]).attachments), 1)

    def test_reply_to_string_or_list(self) -> None:
        """``reply_to`` accepts one address as a string or several as a list."""
        one = _parsed(reply_to="Help <help@ataca.io>").reply_to
        many = _parsed(reply_to=["a@ataca.io", "b@ataca.io"]).reply_to
        self.assertEqual(one, (Mailbox("Help", "help", "ataca.io"),))
        self.assertEqual([m.address for m in many], ["a@ataca.io", "b@ataca.io"])

    def test_nul_in_body(self) -> None:
        """NUL is refused in bodies: it is not allowed in any MIME text encoding."""
        for field in ("body_text", "body_html"):
            self.assertIn(field, _error(_body(**{field: "a\x00b"})).message)


class AddressTests(SynchronousTestCase):
    def test_display_name_forms(self) -> None:
        """``addr``, ``Name <addr>``, ``"Quoted, Name" <addr>`` and ``<addr>`` are read
        into a display name and a bare address."""
        request = _parsed(
            to=[
                "bob@example.com",
                "Bob Smith <bob.smith@example.com>",
                '"Smith, Bob \\"B\\"" <b@example.com>',
                "<plain@example.com>",
            ]
        )
        self.assertEqual(
            request.to,
            (
                Mailbox("", "bob", "example.com"),
                Mailbox("Bob Smith", "bob.smith", "example.com"),
                Mailbox('Smith, Bob "B"', "b", "example.com"),
                Mailbox("", "plain", "example.com"),
            ),
        )

    def test_invalid_addresses(self) -> None:
        """Addresses that are not a single dot-atom mailbox with a valid domain are
        refused, naming the field and index."""
        for address in (
            "",
            "bob",
            "bob@",
            "@example.com",
            "a@b@example.com",
            "a b@example.com",
            '"quoted"@example.com',
            "a..b@example.com",
            ".a@example.com",
            "a(b)@example.com",
            "a@localhost",
            "a@-bad.example",
            "a@[127.0.0.1]",
            "a@example.com.",
            "x" * 65 + "@example.com",
            "a@" + "b" * 250 + ".com",
            "<a@example.com",
            "a@example.com>",
            "Bob <a@example.com> <b@example.com>",
            "A <b> <a@example.com>",
            "a@exa_mple.com",
        ):
            error = _error(_body(to=["ok@example.com", address]))
            self.assertEqual(error.code, "INVALID_REQUEST", address)
            self.assertIn("to[1]", error.message)

    def test_display_name_length(self) -> None:
        """A display name longer than 256 characters is refused."""
        self.assertIn("display name", _error(_body(to=["N" * 257 + " <a@example.com>"])).message)

    def test_non_ascii_addresses(self) -> None:
        """Internationalized addresses are accepted and make the message SMTPUTF8."""
        request = _parsed(to=["jöhn@exämple.com"])
        self.assertEqual(request.recipients, ("jöhn@exämple.com",))
        self.assertTrue(request.smtputf8)
        self.assertFalse(_parsed().smtputf8)

    def test_bad_idna_domain(self) -> None:
        """A non-ASCII domain that IDNA cannot encode is refused."""
        self.assertIn(
            "internationalized", _error(_body(to=["a@ex\u00e4" + "x" * 70 + ".com"])).message
        )

    def test_recipients_deduplicated(self) -> None:
        """The envelope holds each address once, in order of first appearance across to,
        cc and bcc; domains compare case-insensitively, local parts do not."""
        request = _parsed(
            to=["a@Example.com", "b@example.com"],
            cc=["Bob <a@example.COM>", "c@example.com"],
            bcc=["A@example.com", "b@EXAMPLE.com"],
        )
        self.assertEqual(
            request.recipients, ("a@Example.com", "b@example.com", "c@example.com", "A@example.com")
        )


class InjectionTests(SynchronousTestCase):
    def _fields(self, bad: str) -> dict[str, dict[str, Any]]:
        """Field named in the error -> request changes putting ``bad`` into that field."""
        attachment = {"filename": "a.txt", "content_type": "text/plain", "content": "YQ=="}
        return {
            "from": {"from": f"noreply@ataca.io{bad}"},
            "from ": {"from": f"No{bad}Reply <noreply@ataca.io>"},
            "to[1]": {"to": ["ok@example.com", f"bob@example.com{bad}Bcc: x@evil.test"]},
            "cc[0]": {"cc": [f"Carl{bad} <c@example.com>"]},
            "bcc[0]": {"bcc": [f"{bad}d@example.com"]},
            "reply_to[0]": {"reply_to": f"r@example.com{bad}"},
            "subject": {"subject": f"Hi{bad}Bcc: victim@example.com"},
            "headers (a field name)": {"headers": {f"X-A{bad}Bcc": "x"}},
            "headers.X-A": {"headers": {"X-A": f"x{bad}Bcc: victim@example.com"}},
            "attachments[0].filename": {"attachments": [{**attachment, "filename": f"a{bad}.txt"}]},
            "attachments[0].content_type": {
                "attachments": [{**attachment, "content_type": f"text/plain{bad}X: y"}]
            },
        }

    def test_control_characters_in_header_fields(self) -> None:
        """CR, LF, CRLF, NUL (and other line breaks) in any header-bound field are 400
        INVALID_REQUEST naming the field, and nothing is composed."""
        for bad in ("\r", "\n", "\r\n", "\x00", "\x0b", "\x85", "\u2028"):
            for field, changes in self._fields(bad).items():
                result = _compose(_body(**changes))
                assert isinstance(result, ComposeError), (bad, field)
                self.assertEqual(
                    (result.code, result.http_status), ("INVALID_REQUEST", 400), (bad, field)
                )
                self.assertTrue(
                    result.message.startswith(field.strip()), (bad, field, result.message)
                )
                self.assertIn("control characters", result.message, (bad, field))

    def test_tab_allowed_in_subject(self) -> None:
        """A horizontal tab is ordinary header whitespace and is allowed."""
        self.assertEqual(_parsed(subject="a\tb").subject, "a\tb")


class EncodedWordInjectionTests(SynchronousTestCase):
    def test_encoded_line_breaks_refused(self) -> None:
        """RFC 2047 encoded words that decode to CR or LF (which the email package would
        write out as real line breaks) are refused with 400, in every header-bound field:
        no second From, no Bcc header, no injected body."""
        cases = [
            {"headers": {"X-A": "=?utf-8?q?x=0D=0AFrom:_evil@z.com?="}},
            {"subject": "=?utf-8?q?x=0D=0ABcc:_evil@z.com?="},
            {"subject": "=?utf-8?q?a=0Db?="},
            {"subject": "=?utf-8?q?a=0Ab?="},
            {"from": "=?utf-8?q?a=0D=0AFrom:_evil@z.com=0D=0A?= <noreply@ataca.io>"},
            {"reply_to": "=?utf-8?q?=0D=0A=0D=0Abody?= <r@example.com>"},
            {"to": ["=?utf-8?q?x=0D=0ABcc:_e@z.com?= <bob@example.com>"]},
        ]
        for changes in cases:
            result = _compose(_body(**changes))
            assert isinstance(result, ComposeError), changes
            self.assertEqual((result.code, result.http_status), ("INVALID_REQUEST", 400))

    def test_encoded_controls_named_at_validation(self) -> None:
        """An encoded word decoding to CR, LF, NUL or another control character (Q or B,
        mid-word, quoted, any charset) is refused when the request is validated, naming
        the field, as is a B word that does not decode strictly (the email package would
        decode it leniently)."""
        attachment = {"filename": "a.txt", "content_type": "text/plain", "content": "YQ=="}
        words = (
            "=?utf-8?q?a=0D=0Ab?=",
            "x=?UTF-8?Q?=00?=y",
            '"=?iso-8859-1?b?YQ1i?="',
            "=?bogus-charset?q?a=1Bb?=",
            "=?utf-8*en?q?a=7Fb?=",
            "=?utf-8?b?YQ0K!?=",
        )
        for word in words:
            fields = {
                "from": {"from": f"{word} <noreply@ataca.io>"},
                "to[0]": {"to": [f"Bob {word} <bob@example.com>"]},
                "cc[0]": {"cc": [f"{word} <c@example.com>"]},
                "bcc[0]": {"bcc": [f"{word} <d@example.com>"]},
                "reply_to[0]": {"reply_to": f"{word} <r@example.com>"},
                "subject": {"subject": f"Hi {word}"},
                "headers.X-A": {"headers": {"X-A": word}},
                "attachments[0].filename": {
                    "attachments": [{**attachment, "filename": f"{word}.txt"}]
                },
                "attachments[0].content_type": {
                    "attachments": [{**attachment, "content_type": f'text/plain; name="{word}"'}]
                },
            }
            for field, changes in fields.items():
                error = _error(_body(**changes))
                self.assertEqual(error.code, "INVALID_REQUEST", (word, field))
                self.assertTrue(error.message.startswith(field), (word, field, error.message))
                self.assertIn("encoded words", error.message)

    def test_harmless_encoded_words_pass(self) -> None:
        """An encoded word without control characters is kept as the app wrote it."""
        data = _data(subject="=?utf-8?q?caf=C3=A9?=")
        self.assertIn(b"Subject: =?utf-8?q?caf=C3=A9?=\r\n", data)
        for subject in ("=?utf-8?b?Y2Fmw6k=?=", "x =?iso-8859-1?q?caf=E9?= y", "a =? b ?= c"):
            self.assertIsInstance(_compose(_body(subject=subject)), Submission, subject)


class HeaderFieldTests(SynchronousTestCase):
    def test_extra_headers_kept_in_order(self) -> None:
        """``headers`` become header fields, in the order given."""
        request = _parsed(
            headers={"X-Campaign": "spring", "List-Unsubscribe": "<https://u.test/1>"}
        )
        self.assertEqual(
            request.headers, (("X-Campaign", "spring"), ("List-Unsubscribe", "<https://u.test/1>"))
        )

    def test_structural_headers_cannot_be_overridden(self) -> None:
        """Headers Rail writes from typed fields or the MIME structure, or that would speak
        for someone else, cannot be set through ``headers`` (any case)."""
        for name in (
            "From",
            "to",
            "CC",
            "Bcc",
            "Subject",
            "Date",
            "Message-ID",
            "Reply-To",
            "Content-Type",
            "content-transfer-encoding",
            "MIME-Version",
            "Content-Disposition",
            "Sender",
            "Resent-From",
            "Return-Path",
            "Received",
            "DKIM-Signature",
        ):
            error = _error(_body(headers={name: "x"}))
            self.assertEqual(error.code, "INVALID_REQUEST", name)
            self.assertIn(f"{name} cannot be set", error.message)

    def test_header_names_are_rfc5322(self) -> None:
        """Header names must be 1-76 printable ASCII characters other than ':'."""
        for name in ("", "X Foo", "X:Foo", "X-Ü", "x" * 77):
            self.assertEqual(_error(_body(headers={name: "v"})).code, "INVALID_REQUEST", name)

    def test_header_values_are_strings(self) -> None:
        """A header value that is not a string is refused."""
        self.assertIn("headers.X-A", _error(_body(headers={"X-A": 1})).message)


class AttachmentTests(SynchronousTestCase):
    def _attachment(self, **changes: Any) -> dict[str, Any]:
        attachment = {"filename": "a.pdf", "content_type": "application/pdf", "content": "YWJj"}
        attachment.update(changes)
        return {k: v for k, v in attachment.items() if v is not ...}

    def test_parsed(self) -> None:
        """An attachment's base64 content is decoded; content_type parameters are kept."""
        request = _parsed(
            attachments=[
                self._attachment(),
                self._attachment(
                    filename="invite.ics",
                    content_type='Text/Calendar; method=REQUEST; name="a b.ics"',
                    content="QUJD\nREVG\r\n",
                ),
            ]
        )
        first, second = request.attachments
        self.assertEqual(
            (first.maintype, first.subtype, first.content), ("application", "pdf", b"abc")
        )
        self.assertEqual(
            (second.maintype, second.subtype, second.params, second.content),
            ("text", "calendar", (("method", "REQUEST"), ("name", "a b.ics")), b"ABCDEF"),
        )

    def test_default_content_type(self) -> None:
        """Without content_type an attachment is application/octet-stream."""
        (attachment,) = _parsed(attachments=[self._attachment(content_type=...)]).attachments
        self.assertEqual((attachment.maintype, attachment.subtype), ("application", "octet-stream"))

    def test_bad_base64(self) -> None:
        """Content that is not strict base64 is 400 INVALID_REQUEST."""
        for content in ("YWJ", "YW!j", "éé==", "YWJj====x"):
            error = _error(_body(attachments=[self._attachment(content=content)]))
            self.assertEqual(error.code, "INVALID_REQUEST", content)
            self.assertIn("attachments[0].content is not valid base64", error.message)

    def test_invalid_attachments(self) -> None:
        """Missing or malformed attachment fields are refused, naming the attachment."""
        for changes in (
            {"filename": ...},
            {"filename": ""},
            {"content": ...},
            {"content": 5},
            {"content_type": "pdf"},
            {"content_type": "text/plain; charset"},
            {"content_type": "multipart/mixed"},
            {"content_type": "message/rfc822"},
            {"inline": True},
        ):
            error = _error(_body(attachments=[self._attachment(**changes)]))
            self.assertEqual(error.code, "INVALID_REQUEST", changes)
            self.assertIn("attachments[0]", error.message)
        self.assertIn("attachments[0]", _error(_body(attachments=["a.pdf"])).message)


class IdempotencyTests(SynchronousTestCase):
    def test_no_key(self) -> None:
        """Without request_id or header there is no idempotency key."""
        self.assertIsNone(_parsed().idempotency)

    def test_key_from_body_or_header(self) -> None:
        """The key comes from ``request_id`` or from the ``Idempotency-Key`` header, and the
        fingerprint is the same either way."""
        from_body = _parsed(request_id="order-42").idempotency
        from_header = _parsed("order-42").idempotency
        both = _parsed("order-42", request_id="order-42").idempotency
        assert from_body is not None
        self.assertEqual(from_body.key, "order-42")
        self.assertEqual(from_body, from_header)
        self.assertEqual(from_body, both)

    def test_key_disagreement(self) -> None:
        """A request_id different from the Idempotency-Key header is refused."""
        self.assertIn("differ", _error(_body(request_id="a"), "b").message)

    def test_key_syntax(self) -> None:
        """The key is 1 to 255 printable ASCII characters."""
        for key in ("", "x" * 256, "é", "a\tb", "a\x7f"):
            self.assertEqual(_error(_body(request_id=key)).code, "INVALID_REQUEST", key)
            self.assertEqual(_error(_body(), key).code, "INVALID_REQUEST", key)
        longest = _parsed(request_id="~" * 255).idempotency
        assert longest is not None
        self.assertEqual(longest.key, "~" * 255)

    def test_fingerprint_formula(self) -> None:
        """The fingerprint is the SHA-256 hex of the body without request_id, as JSON with
        sorted keys, no spaces and raw UTF-8."""
        document = _document(subject="Grüße", request_id="k")
        canonical = json.dumps(
            {k: v for k, v in document.items() if k != "request_id"},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")
        expected = hashlib.sha256(canonical).hexdigest()
        self.assertEqual(fingerprint(document), expected)
        request = parse_request(json.dumps(document).encode(), None)
        assert isinstance(request, SendRequest)
        self.assertEqual(request.idempotency, IdempotencyKey("k", expected))

    def test_fingerprint_ignores_formatting(self) -> None:
        """Key order, whitespace and escaping do not change the fingerprint; content does."""
        compact = b'{"from":"noreply@ataca.io","to":["bob@example.com"],"body_text":"\xc3\xa9"}'
        spaced = (
            b'{ "body_text" : "\\u00e9" ,\n "to": [ "bob@example.com" ],'
            b' "from": "noreply@ataca.io" }'
        )
        one = parse_request(compact, "k")
        two = parse_request(spaced, "k")
        other = parse_request(compact.replace(b"\xc3\xa9", b"e"), "k")
        assert isinstance(one, SendRequest) and isinstance(two, SendRequest)
        assert isinstance(other, SendRequest)
        self.assertEqual(one.idempotency, two.idempotency)
        self.assertNotEqual(one.idempotency, other.idempotency)


class AuthorizeTests(SynchronousTestCase):
    def test_allowed_sender(self) -> None:
        """A certificate sender, with or without display name, is authorized; the domain
        compares case-insensitively."""
        for sender in ("noreply@ataca.io", "Ataca <alerts@smtp.ataca.io>", "noreply@ATACA.io"):
            self.assertIsNone(authorize(IDENTITY, _parsed(**{"from": sender})), sender)

    def test_other_sender(self) -> None:
        """Any other From is 403 SENDER_NOT_AUTHORIZED, including a different local-part case
        and an allowed display name around another address."""
        for sender in (
            "other@ataca.io",
            "NoReply@ataca.io",
            "noreply@evil.test",
            "noreply@ataca.io <other@evil.test>",
            "Name <other@x.test>",
        ):
            error = authorize(IDENTITY, _parsed(**{"from": sender}))
            assert error is not None, sender
            self.assertEqual((error.code, error.http_status), ("SENDER_NOT_AUTHORIZED", 403))

    def test_compose_checks_authorization(self) -> None:
        """compose refuses an unauthorized From before building anything."""
        result = _compose(_body(**{"from": "Boss <ceo@ataca.io>"}))
        assert isinstance(result, ComposeError)
        self.assertEqual(result.http_status, 403)
        self.assertIn("ceo@ataca.io", result.message)


class LimitTests(SynchronousTestCase):
    def test_too_many_recipients(self) -> None:
        """More distinct recipients than max_recipients is 400 TOO_MANY_RECIPIENTS;
        duplicates do not count."""
        body = _body(to=["a@x.test", "b@x.test"], cc=["A@X.TEST"], bcc=["a@X.test", "c@x.test"])
        refused = _compose(body, max_recipients=3)
        self.assertEqual(
            refused,
            ComposeError("TOO_MANY_RECIPIENTS", 400, "4 distinct recipients; the limit is 3"),
        )
        accepted = _compose(body, max_recipients=4)
        assert isinstance(accepted, Submission)
        self.assertEqual(
            accepted.message.recipients, ("a@x.test", "b@x.test", "A@X.TEST", "c@x.test")
        )

    def test_message_too_large(self) -> None:
        """A composed message larger than max_message_size is 413 PAYLOAD_TOO_LARGE."""
        body = _body(body_text="x" * 5000)
        size = len(_data(body_text="x" * 5000))
        self.assertIsInstance(_compose(body, max_message_size=size), Submission)
        refused = _compose(body, max_message_size=size - 1)
        assert isinstance(refused, ComposeError)
        self.assertEqual((refused.code, refused.http_status), ("PAYLOAD_TOO_LARGE", 413))


class SubmissionTests(CanonicalTests):
    def test_new_message(self) -> None:
        """The NewMessage carries the client, the bare from address, the envelope, the
        clock's time and channel api; the idempotency key is passed along."""
        submission = _compose(
            _body(**{"from": "Ataca <noreply@ataca.io>"}, cc=["Carl <c@example.com>"]), "key-1"
        )
        assert isinstance(submission, Submission)
        message = submission.message
        self.assertEqual(
            (message.id, message.client, message.sender, message.recipients),
            (MESSAGE_ID, "myapp", "noreply@ataca.io", ("bob@example.com", "c@example.com")),
        )
        self.assertEqual((message.channel, message.received_at), ("api", NOW))
        self.assertEqual((message.smtputf8, message.eight_bit), (False, False))
        assert submission.idempotency is not None
        self.assertEqual(submission.idempotency.key, "key-1")

    def test_minimal_headers(self) -> None:
        """Rail adds Date, Message-ID and the MIME headers and nothing else."""
        data = _data()
        self.assertCanonical(data)
        self.assertEqual(
            _header_names(data),
            [
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "Content-Type",
                "Content-Transfer-Encoding",
                "MIME-Version",
            ],
        )
        parsed = _email(data)
        self.assertEqual(parsed["Date"], "Sat, 28 Mar 2026 12:00:00 +0000")
        self.assertEqual(parsed["Message-ID"], f"<{MESSAGE_ID}@{HOSTNAME}>")
        self.assertEqual(parsed.get_content(), "Hi Bob\r\n")

    def test_no_subject_no_header(self) -> None:
        """Without subject the message has no Subject header."""
        self.assertNotIn("Subject", _header_names(_data(subject=...)))

    def test_bcc_not_in_headers(self) -> None:
        """Bcc recipients get the message but are not named in it."""
        submission = _submitted(bcc=["secret@example.com"], cc=["c@example.com"])
        self.assertNotIn(b"secret", submission.message.data)
        self.assertNotIn("Bcc", _header_names(submission.message.data))
        self.assertIn("secret@example.com", submission.message.recipients)

    def test_addresses_in_headers(self) -> None:
        """Display names are kept in From, To, Cc and Reply-To, quoted as needed."""
        parsed = _email(
            _data(
                **{"from": "Ataca Alerts <alerts@smtp.ataca.io>"},
                to=['"Smith, Bob" <bob@example.com>', "amy@example.com"],
                cc=["Carl <c@example.com>"],
                reply_to="Help <help@ataca.io>",
            )
        )
        self.assertEqual(parsed["From"], "Ataca Alerts <alerts@smtp.ataca.io>")
        self.assertEqual(parsed["To"], '"Smith, Bob" <bob@example.com>, amy@example.com')
        self.assertEqual(parsed["Cc"], "Carl <c@example.com>")
        self.assertEqual(parsed["Reply-To"], "Help <help@ataca.io>")

    def test_extra_headers(self) -> None:
        """Extra headers appear with their values."""
        parsed = _email(
            _data(headers={"X-Campaign": "spring", "List-Unsubscribe": "<https://u.test/1>"})
        )
        self.assertEqual(parsed["X-Campaign"], "spring")
        self.assertEqual(parsed["List-Unsubscribe"], "<https://u.test/1>")

    def test_text_and_html_alternative(self) -> None:
        """body_text and body_html become multipart/alternative, text first."""
        data = _data(body_html="<p>Hi Bob</p>")
        self.assertCanonical(data)
        parsed = _email(data)
        self.assertEqual(parsed.get_content_type(), "multipart/alternative")
        parts = list(parsed.iter_parts())
        self.assertEqual([p.get_content_type() for p in parts], ["text/plain", "text/html"])
        self.assertEqual(parts[1].get_content(), "<p>Hi Bob</p>\r\n")
        self.assertEqual(data.count(b"MIME-Version"), 1)

    def test_html_only(self) -> None:
        """body_html alone is a single text/html part."""
        parsed = _email(_data(body_text=..., body_html="<p>x</p>"))
        self.assertEqual(parsed.get_content_type(), "text/html")

    def test_attachments_multipart_mixed(self) -> None:
        """Attachments make multipart/mixed: the body (alternative) first, then each
        attachment base64-encoded with its filename and type."""
        payload = bytes(range(256)) * 4
        data = _data(
            body_html="<p>x</p>",
            attachments=[
                {
                    "filename": "report é.pdf",
                    "content_type": "application/pdf",
                    "content": base64.b64encode(payload).decode(),
                },
                {"filename": "a.txt", "content": base64.b64encode(b"abc").decode()},
            ],
        )
        self.assertCanonical(data)
        parsed = _email(data)
        self.assertEqual(parsed.get_content_type(), "multipart/mixed")
        body, pdf, text = parsed.iter_parts()
        self.assertEqual(body.get_content_type(), "multipart/alternative")
        self.assertEqual(pdf.get_content_type(), "application/pdf")
        self.assertEqual(pdf["Content-Transfer-Encoding"], "base64")
        self.assertEqual(pdf.get_filename(), "report é.pdf")
        self.assertEqual(pdf.get_content(), payload)
        raw = pdf.get_payload()
        assert isinstance(raw, str)
        self.assertEqual(base64.b64decode(raw), payload)
        self.assertLessEqual(max(len(line) for line in raw.splitlines()), 76)
        self.assertEqual(text.get_content_type(), "application/octet-stream")
        self.assertEqual(text.get_content(), b"abc")
        self.assertEqual(data.count(b"MIME-Version"), 1)

    def test_attachment_only(self) -> None:
        """A message of attachments only is multipart/mixed with just those parts."""
        parsed = _email(
            _data(body_text=..., attachments=[{"filename": "a.txt", "content": "YQ=="}])
        )
        self.assertEqual(parsed.get_content_type(), "multipart/mixed")
        (part,) = parsed.iter_parts()
        self.assertEqual(part.get_content(), b"a")

    def test_attachment_params(self) -> None:
        """content_type parameters travel into the attachment's Content-Type."""
        parsed = _email(
            _data(
                attachments=[
                    {
                        "filename": "i.ics",
                        "content_type": "text/calendar; method=REQUEST",
                        "content": "QQ==",
                    }
                ]
            )
        )
        part = list(parsed.iter_parts())[1]
        self.assertEqual(part.get_content_type(), "text/calendar")
        self.assertEqual(part.get_param("method"), "REQUEST")

    def test_non_ascii_subject_and_body(self) -> None:
        """A non-ASCII subject is RFC 2047-encoded and the body is UTF-8 in a 7-bit
        transfer encoding, so the message stays ASCII and needs neither SMTPUTF8 nor
        8BITMIME."""
        submission = _submitted(subject="Grüße aus Köln ☕", body_text="Schöne Grüße\n☕")
        data = submission.message.data
        self.assertCanonical(data)
        self.assertTrue(data.isascii())
        self.assertIn(b"Subject: =?utf-8?", data)
        parsed = _email(data)
        self.assertEqual(parsed["Subject"], "Grüße aus Köln ☕")
        self.assertEqual(parsed.get_content_charset(), "utf-8")
        self.assertIn(parsed["Content-Transfer-Encoding"], ("quoted-printable", "base64"))
        self.assertEqual(parsed.get_content(), "Schöne Grüße\r\n☕\r\n")
        self.assertEqual(
            (submission.message.smtputf8, submission.message.eight_bit), (False, False)
        )

    def test_non_ascii_address(self) -> None:
        """A non-ASCII address makes the message SMTPUTF8 with raw UTF-8 headers."""
        submission = _submitted(to=["Jöhn <jöhn@exämple.com>"])
        data = submission.message.data
        self.assertCanonical(data)
        self.assertIn("To: Jöhn <jöhn@exämple.com>\r\n".encode(), data)
        self.assertEqual((submission.message.smtputf8, submission.message.eight_bit), (True, True))
        self.assertEqual(submission.message.recipients, ("jöhn@exämple.com",))

    def test_line_ends_canonical(self) -> None:
        """Bare CR, bare LF and long lines in bodies still produce CRLF-only output with
        no line over 998 octets."""
        data = _data(
            body_text="one\rtwo\nthree\r\nfour\n\n" + "x" * 5000,
            body_html="<p>\r" + "y" * 3000 + "</p>\n",
        )
        self.assertCanonical(data)
        parsed = _email(data)
        text = next(parsed.iter_parts()).get_content()
        self.assertTrue(text.startswith("one\r\ntwo\r\nthree\r\nfour\r\n\r\n"), text[:40])

    def test_overlong_header_line(self) -> None:
        """Long display names are folded between addresses, but one that cannot be folded
        under 998 octets is refused rather than queued."""
        names = [f"{c * 256} <{c}@example.com>" for c in "abcde"]
        self.assertCanonical(_data(to=names))
        refused = build_message(
            SendRequest(
                sender=Mailbox("", "noreply", "ataca.io"),
                to=(Mailbox("N" * 1200, "a", "example.com"),),
                body_text="x",
            ),
            message_id=MESSAGE_ID,
            hostname=HOSTNAME,
            now=NOW,
        )
        assert isinstance(refused, ComposeError)
        self.assertEqual(refused.code, "INVALID_REQUEST")
        self.assertIn("998", refused.message)


class OwnFieldsTests(SynchronousTestCase):
    def test_rail_writes_at_most_own_fields_besides_the_requests(self) -> None:
        """A message with every optional part has no more header fields than its
        request's ``headers`` plus OWN_FIELDS, the bound under which compose skips
        rescanning the composed header section."""
        from rail.mail.compose import OWN_FIELDS
        from rail.mail.headers import parse_header_section

        submitted = _submitted(
            cc=["carol@example.com"],
            bcc=["dave@example.com"],
            reply_to="help@ataca.io",
            body_html="<p>Hi</p>",
            headers={"X-One": "1", "X-Two": "2"},
            attachments=[
                {
                    "filename": "a.txt",
                    "content_type": "text/plain",
                    "content": base64.b64encode(b"a").decode(),
                }
            ],
        )
        fields = parse_header_section(submitted.message.data).fields
        self.assertLessEqual(len(fields), 2 + OWN_FIELDS)
        self.assertGreater(len(fields), 2)

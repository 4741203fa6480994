"""Tests for rail.pki.names: what may go into a client certificate."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.pki.names import (
    HTTP_WEBHOOK_MESSAGE,
    normalize_domain,
    sender_matches,
    split_address,
    validate_client_name,
    validate_sender,
    validate_webhook,
)


class ClientNameTests(SynchronousTestCase):
    def test_table(self) -> None:
        """Names are 1..64 ASCII letters, digits, '.', '_', '-' starting alphanumeric."""
        table = [
            ("myapp", None),
            ("a", None),
            ("9lives", None),
            ("billing-api_v2.prod", None),
            ("a" * 64, None),
            ("", "must not be empty"),
            ("a" * 65, "must be at most 64 characters"),
            ("my app", "may contain only ASCII letters, digits, '.', '_' and '-'"),
            ("café", "may contain only ASCII letters, digits, '.', '_' and '-'"),
            ("app\n", "may contain only ASCII letters, digits, '.', '_' and '-'"),
            ("a/b", "may contain only ASCII letters, digits, '.', '_' and '-'"),
            ("-app", "must start with a letter or digit"),
            (".hidden", "must start with a letter or digit"),
            ("_x", "must start with a letter or digit"),
        ]
        for name, expected in table:
            self.assertEqual(validate_client_name(name), expected, name)


class SenderTests(SynchronousTestCase):
    def test_accepted(self) -> None:
        """Dot-atom local parts, LDH domains, A-labels and mixed-case domains are accepted."""
        for address in [
            "noreply@ataca.io",
            "alerts@smtp.ataca.io",
            "first.last+tag@example.com",
            "Noreply@Ataca.IO",
            "a!#$%&'*+/=?^_`{|}~-@example.com",
            "user@xn--bcher-kva.example",
            "x@a-b.c0",
            "l" * 64 + "@example.com",
            "a@" + ".".join(["d" * 63] * 3) + ".com",
        ]:
            self.assertIsNone(validate_sender(address), address)

    def test_rejected(self) -> None:
        """Each malformed address gets the message that explains what to change."""
        table = [
            ("", "must not be empty"),
            ("a b@example.com", "must not contain whitespace or control characters"),
            ("ab@example.com\n", "must not contain whitespace or control characters"),
            ("a\x00b@example.com", "must not contain whitespace or control characters"),
            ("a@" + "d" * 250 + ".com", "must be at most 254 characters"),
            ("noreply", "must be an address like name@example.com"),
            ('"john doe"@example.com', "quoted local parts are not supported"),
            ("@example.com", "local part (before '@') must not be empty"),
            (
                "jösé@example.com",
                "local part must be ASCII (internationalized addresses are not supported)",
            ),
            ("a@b@example.com", "must contain exactly one '@'"),
            ("l" * 65 + "@example.com", "local part must be at most 64 characters"),
            (".a@example.com", "local part must not start or end with '.' or contain '..'"),
            ("a.@example.com", "local part must not start or end with '.' or contain '..'"),
            ("a..b@example.com", "local part must not start or end with '.' or contain '..'"),
            (
                "a(b)@example.com",
                "local part contains a character not allowed in an unquoted address",
            ),
            ("a@", "domain must not be empty"),
            ("a@[127.0.0.1]", "address literals ([...]) are not supported; use a domain name"),
            (
                "a@bücher.example",
                "domain 'bücher.example' must be written in punycode ('xn--bcher-kva.example')",
            ),
            ("a@localhost", "domain 'localhost' must contain at least one dot"),
            ("a@example..com", "domain 'example..com' has an empty label"),
            ("a@example.com.", "domain 'example.com.' has an empty label"),
            (
                "a@" + "d" * 64 + ".com",
                f"domain label {'d' * 64!r} is longer than 63 characters",
            ),
            (
                "a@-x.example.com",
                "domain label '-x' may contain only letters, digits and '-'"
                " (not at the start or end)",
            ),
            (
                "a@x_y.example.com",
                "domain label 'x_y' may contain only letters, digits and '-'"
                " (not at the start or end)",
            ),
            ("a@xn--a.example", "domain label 'xn--a' is not valid punycode"),
            ("a@XN--ZZ9.example", "domain label 'XN--ZZ9' is not valid punycode"),
            ("a@1.2.3.4", "domain '1.2.3.4' must not end in an all-numeric label"),
        ]
        for address, expected in table:
            self.assertEqual(validate_sender(address), expected, address)


class WebhookTests(SynchronousTestCase):
    def test_accepted(self) -> None:
        """https URLs with a host, optional port, path and query are accepted."""
        for url in [
            "https://myapp.com/hooks/email",
            "https://myapp.com",
            "HTTPS://MyApp.com/x",
            "https://myapp.com:8443/hooks/email?token=abc&x=%20",
            "https://app/hook",
            "https://192.0.2.1/hook",
            "https://[2001:db8::1]:8443/hook",
        ]:
            self.assertIsNone(validate_webhook(url, allow_http_loopback=False), url)

    def test_http_loopback(self) -> None:
        """Plain http is allowed only towards loopback hosts, and only when enabled."""
        for url in [
            "http://localhost/hook",
            "http://LOCALHOST:8080/hook",
            "http://127.0.0.1:8080/hook",
            "http://127.9.8.7/hook",
            "http://[::1]:8080/hook",
        ]:
            self.assertIsNone(validate_webhook(url, allow_http_loopback=True), url)
            self.assertEqual(validate_webhook(url, allow_http_loopback=False), HTTP_WEBHOOK_MESSAGE)
        for url in ["http://myapp.com/hook", "http://10.0.0.1/hook", "http://[2001:db8::1]/"]:
            self.assertEqual(validate_webhook(url, allow_http_loopback=True), HTTP_WEBHOOK_MESSAGE)

    def test_http_message(self) -> None:
        """The http refusal names the setting that would allow it."""
        self.assertEqual(
            HTTP_WEBHOOK_MESSAGE,
            "webhook must use https:// (plain http:// is only allowed for loopback hosts"
            " when webhooks.allow_http_loopback and webhooks.allow_private are both true)",
        )

    def test_rejected(self) -> None:
        """Each malformed webhook gets the message that explains what to change."""
        absolute = "must be an absolute https:// URL (https://host[:port]/path)"
        table = [
            ("", "must not be empty"),
            ("https://my app.com/", "must not contain whitespace or control characters"),
            ("https://myapp.com/\r\nX: y", "must not contain whitespace or control characters"),
            (
                "https://myäpp.com/",
                "must be ASCII (percent-encode the path and use punycode for the host)",
            ),
            ("https://myapp.com/#frag", "must not contain a fragment ('#...')"),
            (
                "https://myapp.com/a<b>",
                "contains a character that is not allowed in a URL (percent-encode it)",
            ),
            ("myapp.com/hook", absolute),
            ("/hook", absolute),
            ("ftp://myapp.com/hook", absolute),
            ("https:myapp.com/hook", absolute),
            ("https:///hook", "must include a host (https://host[:port]/path)"),
            ("https://:443/hook", "must include a host (https://host[:port]/path)"),
            (
                "https://user:pw@myapp.com/hook",
                "must not contain user information ('user:password@')",
            ),
            (
                "https://my_app.com/hook",
                "webhook host 'my_app.com' is not a valid host name or IP address",
            ),
            ("https://[::1/hook", "webhook host '[::1' is not a valid IPv6 literal"),
            ("https://[zz::1]/hook", "webhook host '[zz::1]' is not a valid IPv6 literal"),
            (
                "https://[::1]x/hook",
                "webhook host '[::1]x' is not a valid host name or IP address",
            ),
            ("https://myapp.com:0/", "webhook port '0' must be a number from 1 to 65535"),
            ("https://myapp.com:65536/", "webhook port '65536' must be a number from 1 to 65535"),
            ("https://myapp.com:x/", "webhook port 'x' must be a number from 1 to 65535"),
            ("https://myapp.com:/", "webhook port '' must be a number from 1 to 65535"),
        ]
        for url, expected in table:
            self.assertEqual(validate_webhook(url, allow_http_loopback=True), expected, url)


class AddressTests(SynchronousTestCase):
    def test_split_address(self) -> None:
        """Addresses split at the last '@'; a string without '@' is a ValueError."""
        self.assertEqual(split_address("a@example.com"), ("a", "example.com"))
        self.assertEqual(split_address('"a@b"@example.com'), ('"a@b"', "example.com"))
        self.assertRaises(ValueError, split_address, "nobody")

    def test_normalize_domain(self) -> None:
        """Domains compare lowercase and without a root dot."""
        self.assertEqual(normalize_domain("Ataca.IO"), "ataca.io")
        self.assertEqual(normalize_domain("ataca.io."), "ataca.io")

    def test_sender_matches(self) -> None:
        """The local part is compared case-sensitively, the domain case-insensitively."""
        table = [
            ("noreply@ataca.io", "noreply@ataca.io", True),
            ("noreply@ataca.io", "noreply@ATACA.io", True),
            ("noreply@Ataca.IO", "noreply@ataca.io", True),
            ("noreply@ataca.io", "NoReply@ataca.io", False),
            ("noreply@ataca.io", "other@ataca.io", False),
            ("noreply@ataca.io", "noreply@smtp.ataca.io", False),
            ("noreply@ataca.io", "noreply@ataca.io.", False),
            ("noreply@ataca.io", "noreply", False),
            ("noreply@ataca.io", "", False),
        ]
        for allowed, candidate, expected in table:
            self.assertEqual(sender_matches(allowed, candidate), expected, (allowed, candidate))

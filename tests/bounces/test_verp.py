"""The signed return path: made per message, verified only with the secret."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.bounces.secret import load_or_create_secret, return_paths, secret_path
from rail.bounces.verp import ReturnPaths, VerpAddress
from rail.config.bouncedomain import template_problem
from rail.config.parse import parse_config
from rail.store.ids import new_message_id

_SECRET = b"s" * 32
_ID = new_message_id(1_800_000_000.0)


class ReturnPathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.paths = ReturnPaths(_SECRET)

    def test_address_names_the_message_on_the_bounce_domain(self) -> None:
        """The return path is b-ULID-TAG at bounces.<sender domain>, and verifies back to
        the message and the sender domain."""
        address = self.paths.address(_ID, "App@Example.COM")
        local, _, domain = address.partition("@")
        self.assertEqual(domain, "bounces.example.com")
        self.assertRegex(local, r"^b-[0-9A-Z]{26}-[0-9a-f]{16}$")
        self.assertLessEqual(len(local), 64)
        self.assertEqual(
            self.paths.verify(address),
            VerpAddress(_ID, "example.com", "bounces.example.com"),
        )

    def test_case_changes_still_verify(self) -> None:
        """A mail system that changes the case of the address it answers still reaches
        the message."""
        address = self.paths.address(_ID, "app@example.com")
        self.assertEqual(self.paths.verify(address.lower()).message_id, _ID)
        self.assertEqual(self.paths.verify(address.upper()).message_id, _ID)

    def test_null_sender_stays_null(self) -> None:
        """A DSN (null reverse-path) is never given a return path."""
        self.assertEqual(self.paths.address(_ID, ""), "")

    def test_forgeries_do_not_verify(self) -> None:
        """A wrong tag, another message's id with this tag, another bounce domain, another
        secret, a malformed local part or a domain outside those allowed: None."""
        address = self.paths.address(_ID, "app@example.com")
        local, _, domain = address.partition("@")
        tag = local[-16:]
        other = new_message_id(1_800_000_001.0)
        flipped = tag[:-1] + ("0" if tag[-1] != "0" else "1")
        for forged in [
            f"{local[:-16]}{flipped}@{domain}",
            f"b-{other}-{tag}@{domain}",
            f"{local}@bounces.example.net",
            f"{local}@example.com",
            ReturnPaths(b"t" * 32).address(_ID, "app@example.com"),
            f"{local}x@{domain}",
            f"b-{_ID}@{domain}",
            "postmaster@bounces.example.com",
            "no-at-sign",
        ]:
            self.assertIsNone(self.paths.verify(forged), forged)
        self.assertIsNone(self.paths.verify(address, frozenset({"example.net"})))
        self.assertIsNotNone(self.paths.verify(address, frozenset({"example.com"})))

    def test_template(self) -> None:
        """Another template puts the bounce domain elsewhere; the sender domain is read
        back from a bounce domain of the template's shape only."""
        paths = ReturnPaths(_SECRET, "{domain}.rp.example.net")
        address = paths.address(_ID, "a@shop.test")
        self.assertTrue(address.endswith("@shop.test.rp.example.net"))
        self.assertEqual(paths.verify(address).domain, "shop.test")
        self.assertIsNone(paths.sender_domain("rp.example.net"))
        self.assertIsNone(paths.sender_domain("shop.test"))

    def test_idn_sender_domain_is_an_a_label(self) -> None:
        """A sender domain in U-labels gets an ASCII return path (no SMTPUTF8 needed)."""
        address = self.paths.address(_ID, "app@bücher.example")
        self.assertTrue(address.isascii())
        self.assertTrue(address.endswith("@bounces.xn--bcher-kva.example"))

    def test_template_problems(self) -> None:
        """A template must hold {domain} once, as whole labels, and add a label."""
        self.assertIsNone(template_problem("bounces.{domain}"))
        self.assertIsNone(template_problem("{domain}.rp.example.net"))
        for bad in [
            "bounces",
            "{domain}",
            "x{domain}",
            "{domain}x",
            "{domain}.{domain}",
            "a b.{domain}",
        ]:
            self.assertIsNotNone(template_problem(bad), bad)
        with self.assertRaises(ValueError):
            ReturnPaths(b"short")


class SecretTests(SynchronousTestCase):
    def test_created_once_private_and_kept(self) -> None:
        """The secret is made on first use with mode 0600 and read back unchanged after."""
        data_dir = Path(self.mktemp())
        first = load_or_create_secret(data_dir)
        self.assertEqual(len(first), 32)
        self.assertEqual(secret_path(data_dir).stat().st_mode & 0o777, 0o600)
        self.assertEqual(load_or_create_secret(data_dir), first)

    def test_config_switch(self) -> None:
        """bounces.enabled false: no return paths (mail keeps the app's address); on by
        default, with the configured template."""
        data_dir = Path(self.mktemp())
        base = {
            "hostname": "mx.example.com",
            "tls": {"self_signed": True},
            "data_dir": str(data_dir),
        }
        self.assertIsNone(
            return_paths(parse_config({**base, "bounces": {"enabled": False}}, Path(".")))
        )
        self.assertFalse(secret_path(data_dir).exists())
        paths = return_paths(
            parse_config({**base, "bounces": {"domain": "rp.{domain}"}}, Path("."))
        )
        self.assertIsNotNone(paths)
        self.assertTrue(paths.address(_ID, "a@example.com").endswith("@rp.example.com"))

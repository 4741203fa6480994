"""Rotatable webhook secrets: stored in the registry, signing through their overlap,
checked with the ``standardwebhooks`` package as applications do."""

from __future__ import annotations

import io
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from twisted.trial.unittest import SynchronousTestCase

from rail.cli import run
from rail.config import load_config
from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.webhooks.key import WebhookKey, load_or_create_key, secret_text
from rail.webhooks.secrets import UnknownClientError, read_secrets, rotate_secret
from rail.webhooks.signing import webhook_headers
from tests.integration.fixtures import make_config

T = 1_790_000_000.0
BODY = b'{"type":"message.delivered"}'


def _verifies(secret: str, headers: dict[str, str]) -> bool:
    """Whether ``standardwebhooks`` accepts the POST with ``secret`` (it reads the wall
    clock: the POSTs here are made within its 5-minute tolerance of now)."""
    hook = Webhook(secret)
    try:
        hook.verify(BODY, headers)
    except WebhookVerificationError:
        return False
    return True


class RotationTests(SynchronousTestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir(parents=True)
        self.config = make_config(base / "data")
        request = ClientRequest(
            name="shop",
            emails=("shop@rail.test",),
            webhook="https://app.example/hook",
            key_type="ed25519",
            validity=timedelta(days=30),
        )
        issue_client(self.config, request, base, datetime.now(UTC))
        self.key = WebhookKey(ed25519.Ed25519PrivateKey.generate())

    def headers(self, when: float) -> dict[str, str]:
        return webhook_headers(self.key, "msg_1_shop", when, BODY, "shop")

    def test_never_rotated_is_derived(self) -> None:
        """Without a rotation the client's one secret is the derived one: nothing is
        stored and the existing secret keeps verifying."""
        self.assertEqual(read_secrets(self.config.data_dir), {})
        self.key.use_secrets(read_secrets(self.config.data_dir))
        self.assertEqual(self.key.client_secret("shop"), self.key.derived_secret("shop"))
        self.assertEqual(self.key.client_secrets("shop", T), [self.key.derived_secret("shop")])

    def test_overlap_then_only_the_new_secret(self) -> None:
        """After a rotation both the new and the replaced secret sign (two v1 entries,
        the new one first) until the overlap ends, then only the new one; each verifies
        with ``standardwebhooks`` while it signs, the old one not after."""
        now = float(int(time.time()))
        derived = self.key.client_secret_text("shop")
        rotation = rotate_secret(self.config.data_dir, "shop", now, overlap=100)
        self.assertEqual(rotation.previous_until, now + 100)
        self.key.use_secrets(read_secrets(self.config.data_dir))
        new = secret_text(rotation.secret)
        self.assertEqual(self.key.client_secret_text("shop"), new)
        during = self.headers(now + 99)
        self.assertEqual(
            [e.split(",")[0] for e in during["webhook-signature"].split(" ")], ["v1", "v1", "v1a"]
        )
        self.assertTrue(_verifies(new, during))
        self.assertTrue(_verifies(derived, during))
        after = self.headers(now + 100)
        self.assertTrue(_verifies(new, after))
        self.assertFalse(_verifies(derived, after))

    def test_second_rotation(self) -> None:
        """A second rotation retires the first rotated secret after its own overlap; a
        secret whose overlap has ended is deleted."""
        first = rotate_secret(self.config.data_dir, "shop", T, overlap=60)
        second = rotate_secret(self.config.data_dir, "shop", T + 100, overlap=60)
        self.key.use_secrets(read_secrets(self.config.data_dir))
        self.assertEqual(self.key.client_secrets("shop", T + 120), [second.secret, first.secret])
        self.assertEqual(self.key.client_secrets("shop", T + 160), [second.secret])
        self.assertEqual(len(read_secrets(self.config.data_dir)["shop"]), 2)

    def test_other_clients_unchanged(self) -> None:
        """Rotating one client's secret leaves every other client's derived secret."""
        rotate_secret(self.config.data_dir, "shop", T)
        self.key.use_secrets(read_secrets(self.config.data_dir))
        self.assertEqual(self.key.client_secret("other"), self.key.derived_secret("other"))

    def test_unknown_client(self) -> None:
        """A name no certificate has is refused, and nothing is stored."""
        self.assertRaises(UnknownClientError, rotate_secret, self.config.data_dir, "nobody", T)
        self.assertEqual(read_secrets(self.config.data_dir), {})


class CommandTests(SynchronousTestCase):
    def rail(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        return run(list(args)), out.getvalue(), err.getvalue()

    def test_rotate_command(self) -> None:
        """``rail certs webhook-secret rotate NAME`` prints the new secret, which
        ``rail certs issue`` then prints too; an unknown name fails with one line."""
        directory = Path(self.mktemp()).absolute()
        code, out, err = self.rail("init", "--dev", str(directory))
        self.assertEqual(code, 0, err)
        data_dir = load_config(directory / "rail.yaml").data_dir
        key = load_or_create_key(data_dir)
        self.assertIn(f"public key {key.public_text}", out)
        self.assertIn(f"secret     {key.client_secret_text('app')}", out)
        config = str(directory / "rail.yaml")
        code, out, err = self.rail(
            "certs", "webhook-secret", "rotate", "--config", config, "app", "--overlap", "1h"
        )
        self.assertEqual(code, 0, err)
        key.use_secrets(read_secrets(data_dir))
        new = key.client_secret_text("app")
        self.assertIn(f"new webhook secret for app: {new}", out)
        self.assertNotEqual(new, secret_text(key.derived_secret("app")))
        code, out, err = self.rail(
            "certs", "issue", "--config", config, "--name", "app", "--email", "app@rail.test",
            "--webhook", "http://127.0.0.1:8088/inbound", "--out", str(directory), "--force",
        )  # fmt: skip
        self.assertEqual(code, 0, err)
        self.assertIn(f"secret      {new}", out)
        code, out, err = self.rail("certs", "webhook-secret", "rotate", "--config", config, "x")
        self.assertEqual(
            (code, err), (1, "rail: no certificate was issued to a client named 'x'\n")
        )

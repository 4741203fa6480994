"""The webhook signing key and Standard Webhooks ``v1a`` signatures."""

from __future__ import annotations

import base64
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.files import PKIError
from rail.webhooks.key import (
    WebhookKey,
    load_or_create_key,
    public_key_from_text,
    webhook_key_path,
    webhook_public_key,
)
from rail.webhooks.signing import (
    VerificationError,
    sign,
    verify,
    webhook_headers,
    webhook_id,
)

# The asymmetric signing vector of the Standard Webhooks reference library
# (libraries/go/webhook_asymmetric_test.go, TestAsymmetricWebhookSign).
_VECTOR_SECRET = "VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="
_VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
_VECTOR_TIME = 1614265330
_VECTOR_BODY = b'{"test": 2432232314}'
_VECTOR_SIGNATURE = (
    "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
)


class KeyFileTests(SynchronousTestCase):
    def test_created_once_private_and_reused(self) -> None:
        """The key is created under data_dir/webhook/ed25519.key with mode 0600 (its
        directory 0700), and the next load returns the same key."""
        data_dir = Path(self.mktemp())
        first = load_or_create_key(data_dir)
        path = webhook_key_path(data_dir)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(path.parent).st_mode), 0o700)
        self.assertEqual(load_or_create_key(data_dir).public_text, first.public_text)
        self.assertEqual(webhook_public_key(data_dir), first.public_text)

    def test_public_key_format(self) -> None:
        """The public key is whpk_ + standard base64 of the raw 32-byte key."""
        key = load_or_create_key(Path(self.mktemp()))
        self.assertTrue(key.public_text.startswith("whpk_"))
        raw = base64.b64decode(key.public_text[5:], validate=True)
        self.assertEqual(raw, key.public_bytes)
        self.assertEqual(len(raw), 32)
        self.assertEqual(public_key_from_text(key.public_text).public_bytes_raw(), raw)

    def test_secret_forms_round_trip(self) -> None:
        """whsk_ is base64 of the 32-byte seed; the 64-byte seed||public form is read
        too, and a mismatched public half is refused."""
        key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        self.assertEqual(WebhookKey.from_secret_text(key.secret_text).public_text, key.public_text)
        seed = base64.b64decode(key.secret_text[5:])
        self.assertEqual(len(seed), 32)
        long_form = "whsk_" + base64.b64encode(seed + key.public_bytes).decode()
        self.assertEqual(WebhookKey.from_secret_text(long_form).public_text, key.public_text)
        wrong = "whsk_" + base64.b64encode(seed + bytes(32)).decode()
        self.assertRaises(ValueError, WebhookKey.from_secret_text, wrong)

    def test_not_a_key_file(self) -> None:
        """A corrupt key file is an error naming the file, never silently replaced."""
        data_dir = Path(self.mktemp())
        path = webhook_key_path(data_dir)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"garbage")
        error = self.assertRaises(PKIError, load_or_create_key, data_dir)
        self.assertIn(str(path), str(error))
        self.assertEqual(path.read_bytes(), b"garbage")


class SigningTests(SynchronousTestCase):
    def test_reference_vector(self) -> None:
        """Rail's signature equals the Standard Webhooks reference library's for the
        same seed, id, timestamp and payload (ed25519 is deterministic)."""
        key = WebhookKey.from_secret_text(_VECTOR_SECRET)
        self.assertEqual(sign(key, _VECTOR_ID, _VECTOR_TIME, _VECTOR_BODY), _VECTOR_SIGNATURE)

    def test_headers_verify_with_the_public_key(self) -> None:
        """The three headers verify with the whpk_ key and plain cryptography; the
        timestamp is the attempt's whole seconds."""
        key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        body = b'{"message_id":"X"}'
        headers = webhook_headers(key, "msg_X_myapp", 1774699200.9, body)
        self.assertEqual(headers["webhook-id"], "msg_X_myapp")
        self.assertEqual(headers["webhook-timestamp"], "1774699200")
        verify(key.public_text, headers, body, now=1774699230.0)
        version, _, signature = headers["webhook-signature"].partition(",")
        self.assertEqual(version, "v1a")
        public = public_key_from_text(key.public_text)
        public.verify(base64.b64decode(signature), b"msg_X_myapp.1774699200." + body)

    def test_tampering_and_stale_rejected(self) -> None:
        """A changed body, id or timestamp, another key, or a timestamp outside the
        tolerance fail verification."""
        key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        other = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        body = b"{}"
        headers = webhook_headers(key, "msg_A_b", 1000.0, body)
        cases = [
            (key, headers, b"{ }", 1000.0),
            (key, {**headers, "webhook-id": "msg_B_b"}, body, 1000.0),
            (key, {**headers, "webhook-timestamp": "1001"}, body, 1000.0),
            (other, headers, body, 1000.0),
            (key, headers, body, 1000.0 + 301),
            (key, {**headers, "webhook-signature": "v1,AAAA"}, body, 1000.0),
        ]
        for which, sent, data, now in cases:
            self.assertRaises(VerificationError, verify, which.public_text, sent, data, now=now)

    def test_rotation_list(self) -> None:
        """Several space-separated signatures: any matching v1a one is enough."""
        key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        headers = webhook_headers(key, "msg_A_b", 1000.0, b"{}")
        headers["webhook-signature"] = "v1,xyz= v1a,AAAA " + headers["webhook-signature"]
        verify(key.public_text, headers, b"{}", now=1000.0)

    def test_webhook_id(self) -> None:
        """The id is stable per (message, client), has no '.', and different clients
        (even 'a.b' and 'a_b') get different ids."""
        self.assertEqual(webhook_id("01KMT", "myapp"), "msg_01KMT_myapp")
        dotted = webhook_id("01KMT", "app.prod")
        self.assertNotIn(".", dotted)
        self.assertNotEqual(dotted, webhook_id("01KMT", "app_prod"))
        self.assertNotEqual(dotted, webhook_id("01KMT", "app-prod"))


class SymmetricSignatureTests(SynchronousTestCase):
    def test_standardwebhooks_package_verifies(self) -> None:
        """The ``standardwebhooks`` package (which checks only ``v1``) accepts Rail's
        headers with the client's ``whsec_`` secret, and refuses them with another
        client's secret; the ``v1a`` entry is still there for public-key verifiers."""
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        body = b'{"message_id":"01ABC","to":["a@rail.test"]}'
        headers = webhook_headers(key, "msg_01ABC_shop", time.time(), body, "shop")
        parsed = Webhook(key.client_secret_text("shop")).verify(body, headers)
        self.assertEqual(parsed["message_id"], "01ABC")
        with self.assertRaises(WebhookVerificationError):
            Webhook(key.client_secret_text("other")).verify(body, headers)
        self.assertEqual(
            [entry.split(",")[0] for entry in headers["webhook-signature"].split(" ")],
            ["v1", "v1a"],
        )
        verify(key.public_text, headers, body, now=time.time())

    def test_client_secrets_differ(self) -> None:
        """Each client has its own stable secret, and it is not the key's seed."""
        key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        self.assertEqual(key.client_secret("a"), key.client_secret("a"))
        self.assertNotEqual(key.client_secret("a"), key.client_secret("b"))
        self.assertTrue(key.client_secret_text("a").startswith("whsec_"))
        self.assertNotIn(key.secret_text.removeprefix("whsk_"), key.client_secret_text("a"))


class DocsTests(SynchronousTestCase):
    def test_documented_python_verifier_works(self) -> None:
        """The cryptography-based verifier in docs/webhooks.md accepts Rail's headers
        (any header case) and rejects a changed body."""
        docs = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
        blocks = re.findall(r"```python\n(.*?)```", docs.read_text(), re.S)
        [code] = [block for block in blocks if "def verify_rail_webhook" in block]
        key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        namespace: dict[str, object] = {}
        exec(code.replace('"whpk_..."', repr(key.public_text)), namespace)  # noqa: S102
        check: Any = namespace["verify_rail_webhook"]
        body = b'{"message_id":"X"}'
        headers = webhook_headers(key, "msg_X_myapp", time.time(), body)
        check({name.title(): value for name, value in headers.items()}, body)
        self.assertRaises(ValueError, check, headers, body + b" ")

    def test_documented_standardwebhooks_example_works(self) -> None:
        """The ``standardwebhooks`` example in docs/webhooks.md, given the client's secret,
        returns the payload of Rail's POST and refuses a changed body."""
        from standardwebhooks.webhooks import WebhookVerificationError

        docs = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
        blocks = re.findall(r"```python\n(.*?)```", docs.read_text(), re.S)
        [code] = [block for block in blocks if "from standardwebhooks" in block]
        key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        namespace: dict[str, object] = {}
        secret = key.client_secret_text("myapp")
        exec(code.replace('"whsec_..."', repr(secret)), namespace)  # noqa: S102
        handle: Any = namespace["handle"]
        body = b'{"message_id":"X"}'
        headers = webhook_headers(key, "msg_X_myapp", time.time(), body, "myapp")
        self.assertEqual(handle(headers, body), {"message_id": "X"})
        self.assertRaises(WebhookVerificationError, handle, headers, body + b" ")

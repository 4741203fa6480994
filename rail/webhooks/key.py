"""Rail's webhook signing key: one ed25519 key pair under ``data_dir/webhook/``.

Created on first use (0600, written atomically, never replaced), so the public key an
application pinned stays valid across restarts. Its public half is published in the
Standard Webhooks asymmetric format: ``whpk_`` + base64 of the raw 32-byte public key
(``GET /api/v1/webhook-key``, ``rail certs issue``). The secret form ``whsk_`` + base64 of
the 32-byte seed is what the Standard Webhooks reference libraries take
(``NewWebhookAsymmetric`` in Go); Rail never shows it, but it is here for tests and tools.

Synchronous on purpose, like :mod:`rail.pki.files`: called at start-up and by the CLI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from rail.pki.files import KEY_MODE, PKIError, directory_lock, write_file_atomic

if TYPE_CHECKING:
    from rail.webhooks.secrets import ClientSecret

__all__ = [
    "CLIENT_SECRET_PREFIX",
    "PUBLIC_PREFIX",
    "SECRET_PREFIX",
    "WebhookKey",
    "load_or_create_key",
    "public_key_from_text",
    "secret_text",
    "webhook_key_path",
    "webhook_public_key",
]

PUBLIC_PREFIX = "whpk_"
SECRET_PREFIX = "whsk_"  # noqa: S105 (a prefix, not a secret)
CLIENT_SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
_CLIENT_SECRET_LABEL = b"rail webhook v1 client secret\0"
_DIRECTORY_MODE = 0o700


@attrs.frozen
class WebhookKey:
    """The signing key and its published forms."""

    private_key: ed25519.Ed25519PrivateKey = attrs.field(repr=False)
    _client_secrets: dict[str, bytes] = attrs.field(factory=dict, init=False, repr=False, eq=False)
    """Derived secrets by client (one derivation per POST cost as much as the signing)."""
    _stored: list[Mapping[str, tuple[ClientSecret, ...]]] = attrs.field(
        factory=lambda: [{}], init=False, repr=False, eq=False
    )
    """The rotated secrets (:mod:`rail.webhooks.secrets`), in a one-item list replaced
    whole by :meth:`use_secrets`."""

    @classmethod
    def from_secret_text(cls, text: str) -> WebhookKey:
        """Read a ``whsk_`` secret: base64 of the 32-byte seed, or of the 64-byte
        seed || public key some tools write (the public half is then checked)."""
        raw = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
        if len(raw) not in (32, 64):
            raise ValueError(f"a whsk_ secret holds 32 or 64 bytes, not {len(raw)}")
        key = cls(ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32]))
        if len(raw) == 64 and raw[32:] != key.public_bytes:
            raise ValueError("the whsk_ secret's public half does not match its seed")
        return key

    @property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_text(self) -> str:
        """``whpk_...``: what applications verify with."""
        return PUBLIC_PREFIX + base64.b64encode(self.public_bytes).decode("ascii")

    @property
    def secret_text(self) -> str:
        """``whsk_...`` (the seed): never logged, never served."""
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return SECRET_PREFIX + base64.b64encode(seed).decode("ascii")

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    def use_secrets(self, table: Mapping[str, tuple[ClientSecret, ...]]) -> None:
        """Sign with these rotated secrets from now on (read by
        :func:`rail.webhooks.secrets.read_secrets`); clients not in ``table`` keep their
        derived secret."""
        self._stored[0] = table

    def client_secret(self, client: str) -> bytes:
        """The current symmetric (``v1``, HMAC-SHA256) secret of one client: the newest
        one ``rail certs webhook-secret rotate`` made, or, for a client that never
        rotated, :meth:`derived_secret`."""
        for stored in self._stored[0].get(client, ()):
            if stored.retires_at is None:
                return stored.secret if stored.secret is not None else self.derived_secret(client)
        return self.derived_secret(client)

    def client_secrets(self, client: str, now: float) -> list[bytes]:
        """Every secret that signs ``client``'s webhooks at ``now``: the current one, then
        those a rotation replaced less than its overlap ago."""
        stored = self._stored[0].get(client)
        if not stored:
            return [self.derived_secret(client)]
        return [
            self.derived_secret(client) if each.secret is None else each.secret
            for each in stored
            if each.retires_at is None or each.retires_at > now
        ]

    def derived_secret(self, client: str) -> bytes:
        """The secret of a client that never rotated, derived from the key's seed and the
        client name: nothing more to store, different for every client, and one client's
        secret tells nothing about another's or about the seed.

        Standard Webhooks' published libraries (the ``standardwebhooks`` Python package)
        verify only ``v1``; applications that have them check this signature, others the
        ``v1a`` one with the public key."""
        found = self._client_secrets.get(client)
        if found is None:
            seed = self.private_key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            found = hmac.new(seed, _CLIENT_SECRET_LABEL + client.encode(), hashlib.sha256).digest()
            if len(self._client_secrets) >= 10_000:
                self._client_secrets.clear()
            self._client_secrets[client] = found
        return found

    def client_secret_text(self, client: str) -> str:
        """``whsec_...``: what ``standardwebhooks.Webhook(...)`` takes for ``client`` (its
        current secret)."""
        return secret_text(self.client_secret(client))


def secret_text(secret: bytes) -> str:
    """A client secret as ``whsec_`` + base64, the Standard Webhooks form."""
    return CLIENT_SECRET_PREFIX + base64.b64encode(secret).decode()


def public_key_from_text(text: str) -> ed25519.Ed25519PublicKey:
    """The key of a ``whpk_`` string (ValueError if it is not one)."""
    if not text.startswith(PUBLIC_PREFIX):
        raise ValueError(f"a webhook public key starts with {PUBLIC_PREFIX}")
    raw = base64.b64decode(text.removeprefix(PUBLIC_PREFIX), validate=True)
    if len(raw) != 32:
        raise ValueError(f"an ed25519 public key has 32 bytes, not {len(raw)}")
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


def webhook_key_path(data_dir: Path) -> Path:
    return data_dir / "webhook" / "ed25519.key"


def _load(path: Path) -> WebhookKey:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PKIError(f"{path}: cannot read ({e.strerror})") from e
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise PKIError(f"{path}: not a PEM private key") from e
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise PKIError(f"{path}: not an ed25519 private key")
    return WebhookKey(key)


def load_or_create_key(data_dir: Path) -> WebhookKey:
    """The webhook signing key, created on first use; an existing one is never replaced."""
    path = webhook_key_path(data_dir)
    directory = path.parent
    try:
        if not directory.is_dir():
            directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
            os.chmod(directory, _DIRECTORY_MODE)
    except OSError as e:
        raise PKIError(f"{directory}: cannot create directory ({e.strerror})") from e
    with directory_lock(directory):
        if path.exists():
            return _load(path)
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            write_file_atomic(path, pem, KEY_MODE, replace=False)
        except FileExistsError:
            return _load(path)
        except OSError as e:
            raise PKIError(f"{path}: cannot write ({e.strerror})") from e
        return WebhookKey(key)


def webhook_public_key(data_dir: Path) -> str:
    """The ``whpk_`` public key applications verify webhooks with (created if missing):
    what ``rail certs issue`` prints."""
    return load_or_create_key(data_dir).public_text

"""``rail certs webhook-secret rotate NAME``: a new ``v1`` webhook secret for a client.

Writes the registry (:mod:`rail.webhooks.secrets`) directly, like ``rail certs revoke``:
a running Rail reads the secrets again every :data:`REFRESH_INTERVAL` seconds (and on
SIGHUP), so its webhooks carry the new signature within that time, beside the old one
until the overlap ends.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rail.config import Config, load_config
from rail.config.units import parse_duration
from rail.pki.source import RegistrySource
from rail.shared.mirror import synced
from rail.shared.registry import SharedSource, registry_source
from rail.webhooks.key import load_or_create_key, secret_text
from rail.webhooks.secrets import DEFAULT_OVERLAP, Rotation, read_secrets, rotate_secret

__all__ = [
    "REFRESH_INTERVAL",
    "add_webhook_secret_command",
    "print_rotation",
    "verification_keys",
]

REFRESH_INTERVAL = 10.0
"""Seconds between a running Rail's reads of the rotated secrets."""


def add_webhook_secret_command(
    certs: Any, with_config: Callable[[argparse.ArgumentParser], None], parser_class: type
) -> None:
    """Register ``webhook-secret rotate`` under ``rail certs``."""
    group = certs.add_parser(
        "webhook-secret", help="a client's v1 (HMAC) webhook secret"
    ).add_subparsers(dest="secret_command", metavar="COMMAND", parser_class=parser_class)
    group.required = True
    p = group.add_parser(
        "rotate", help="give a client a new webhook secret; the old one signs during --overlap"
    )
    with_config(p)
    p.add_argument("name", metavar="NAME", help="client name (certificate CN)")
    p.add_argument(
        "--overlap",
        default="24h",
        help="how long the replaced secret keeps signing too (default 24h; 0s: not at all)",
    )
    p.set_defaults(func=_cmd_rotate)


def _cmd_rotate(args: argparse.Namespace) -> int:
    try:
        overlap = parse_duration(args.overlap) if args.overlap else DEFAULT_OVERLAP
    except ValueError as e:
        sys.stderr.write(f"rail: --overlap: {e}\n")
        return 2
    config = load_config(args.config)
    rotation = rotate_secret(secrets_home(config), args.name, time.time(), overlap)
    print_rotation(rotation)
    if config.storage.backend == "postgresql":
        print("every running node signs with it at once (notified)")
    else:
        print(f"a running Rail signs with it within {REFRESH_INTERVAL:.0f} seconds")
    return 0


def verification_keys(data_dir: Path, client: str, config: Config | None = None) -> tuple[str, str]:
    """Rail's webhook public key (``whpk_``, for ``v1a``) and ``client``'s current secret
    (``whsec_``, for ``v1``: the rotated one if it was rotated), creating the signing key
    if it is missing: what ``rail certs issue`` and ``rail init --dev`` print. With
    ``config`` naming the shared database, the key and secrets are the shared ones."""
    if config is not None:
        source = registry_source(config)
        if isinstance(source, SharedSource):
            key = synced(
                source,
                config.data_dir,
                lambda: load_or_create_key(config.data_dir),
                paths=("webhook/ed25519.key",),
                now=time.time(),
            )
            key.use_secrets(read_secrets(source))
            return key.public_text, key.client_secret_text(client)
    key = load_or_create_key(data_dir)
    key.use_secrets(read_secrets(data_dir))
    return key.public_text, key.client_secret_text(client)


def secrets_home(config: Config) -> Path | RegistrySource:
    """Where ``config``'s rotated webhook secrets are: beside its registry."""
    source = registry_source(config)
    return source if isinstance(source, SharedSource) else config.data_dir


def print_rotation(rotation: Rotation) -> None:
    """The new secret and when the old one stops signing."""
    until = datetime.fromtimestamp(rotation.previous_until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"new webhook secret for {rotation.client}: {secret_text(rotation.secret)}")
    print(f"the previous secret signs too until {until}; give the application the new one")

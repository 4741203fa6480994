"""One ACME (RFC 8555) order, start to finish, with certbot's ``acme`` library.

Blocking on purpose: the library speaks HTTP through ``requests`` and sleeps while it
polls, so :func:`issue_certificate` must run in a worker thread (the renewal service
uses ``deferToThreadPool``). It never touches the reactor, nor logs (the service does,
on the reactor thread); the only state it shares with the reactor thread is
:class:`PendingChallenges`, which is locked.

An order: load (or create) the account key, register the account (or find it again by its
key), generate a new certificate key, order the names, publish each HTTP-01 key
authorization, ask the CA to validate, poll, finalize, download the chain, write it with
its key under ``data_dir/acme`` and return it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from rail.acme.challenges import PendingChallenges
from rail.acme.storage import load_or_create_account_key, save_acme_material
from rail.pki.keys import PrivateKey, generate_private_key, private_key_pem, public_key_der
from rail.pki.tls import ServerMaterial

__all__ = ["AcmeError", "OrderBusy", "OrderRequest", "OrderStopped", "issue_certificate"]

USER_AGENT = "rail-acme"


class AcmeError(Exception):
    """The CA refused or the order cannot be completed (the message says why)."""


class OrderBusy(Exception):  # noqa: N818 (another node's order, not an error of this one)
    """Another node sharing the database is ordering the certificate right now."""


class OrderStopped(Exception):  # noqa: N818 (it is not an error: the service is stopping)
    """The service stopped while the order was in progress."""


@attrs.frozen(kw_only=True)
class OrderRequest:
    """Everything one order needs, from ``tls.acme`` and the host's names."""

    directory: str
    """The CA's directory URL."""
    names: tuple[str, ...]
    """DNS names of the certificate; the first is its subject CN."""
    data_dir: Path
    """Where the account key and the issued certificate are kept (``data_dir/acme``)."""
    email: str | None = None
    ca_file: Path | None = None
    """PEM bundle verifying the CA's HTTPS; None for the system trust store."""
    network_timeout: float = 30.0
    """Per HTTP request to the CA."""
    poll_timeout: float = 90.0
    """How long the CA may take to validate and issue."""
    key_type: str = "ecdsa-p256"
    """Key type of the certificate's (new, per order) private key."""


def issue_certificate(
    request: OrderRequest, pending: PendingChallenges, stop: threading.Event | None = None
) -> ServerMaterial:
    """Run one order; blocks. Returns the new chain and key, already saved to disk.

    ``stop`` is checked between steps: once set, :class:`OrderStopped` is raised at the
    next one. Raises :class:`AcmeError` for refusals and the library's or ``requests``'
    exceptions for network failures; the caller backs off and retries in any case.
    """
    if not request.names:
        raise AcmeError("no names to order a certificate for")
    halt = stop if stop is not None else threading.Event()
    account_key = JWKEC(key=load_or_create_account_key(request.data_dir))
    verify: Any = str(request.ca_file) if request.ca_file is not None else True
    net = client.ClientNetwork(
        account_key,
        alg=ES256,
        verify_ssl=verify,  # requests takes a CA bundle path here as well as a bool
        user_agent=USER_AGENT,
        timeout=int(request.network_timeout),
    )
    acme = client.ClientV2(client.ClientV2.get_directory(request.directory, net), net)
    _checkpoint(halt)
    _register(acme, request.email)
    key = generate_private_key(request.key_type)
    csr = crypto_util.make_csr(private_key_pem(key), list(request.names))
    _checkpoint(halt)
    order = acme.new_order(csr)
    tokens: list[str] = []
    try:
        for authorization in order.authorizations:
            if authorization.body.status == messages.STATUS_VALID:
                continue  # the CA remembers an earlier validation
            _checkpoint(halt)
            challenge = _http01(authorization)
            response, validation = challenge.response_and_validation(account_key)
            token = challenge.chall.encode("token")
            pending.add(token, validation)
            tokens.append(token)
            acme.answer_challenge(challenge, response)
        _checkpoint(halt)
        deadline = datetime.now() + timedelta(seconds=request.poll_timeout)
        try:
            order = acme.poll_and_finalize(order, deadline)
        except errors.ValidationError as e:
            raise AcmeError(_validation_problems(e)) from e
        except errors.TimeoutError as e:
            raise AcmeError(f"the CA did not issue within {request.poll_timeout:.0f}s") from e
    finally:
        for token in tokens:
            pending.remove(token)
    material = _material(order.fullchain_pem, key)
    save_acme_material(request.data_dir, material)
    return material


def _checkpoint(stop: threading.Event) -> None:
    if stop.is_set():
        raise OrderStopped("stopped")


def _register(acme: client.ClientV2, email: str | None) -> None:
    """Register the account, or find the existing one: the CA answers "conflict" with the
    account's URL when the key is already registered (RFC 8555 §7.3.1)."""
    registration = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
    try:
        acme.new_account(registration)
    except errors.ConflictError as e:
        acme.net.account = messages.RegistrationResource(uri=e.location, body=registration)


def _http01(authorization: messages.AuthorizationResource) -> messages.ChallengeBody:
    for challenge in authorization.body.challenges:
        if isinstance(challenge.chall, challenges.HTTP01):
            return challenge
    name = authorization.body.identifier.value
    raise AcmeError(f"the CA offers no http-01 challenge for {name}")


def _validation_problems(error: errors.ValidationError) -> str:
    problems = []
    for authorization in error.failed_authzrs:
        name = authorization.body.identifier.value
        for challenge in authorization.body.challenges:
            if challenge.error is not None:
                problems.append(f"{name}: {challenge.error}")
    return "validation failed: " + ("; ".join(problems) or "no detail from the CA")


def _material(fullchain_pem: str | None, key: PrivateKey) -> ServerMaterial:
    if not fullchain_pem:
        raise AcmeError("the CA returned no certificate")
    try:
        chain: Sequence[x509.Certificate] = x509.load_pem_x509_certificates(
            fullchain_pem.encode("ascii")
        )
    except ValueError as e:
        raise AcmeError("the CA returned an unreadable certificate chain") from e
    if public_key_der(chain[0].public_key()) != public_key_der(key.public_key()):
        raise AcmeError("the CA returned a certificate for another key")
    return ServerMaterial(chain=tuple(chain), key=key)

"""Everything the doctor reads from disk before it asks the network anything.

Synchronous file and SQLite work (the zones, with DKIM keys and the queue's oldest pending
message, the server certificate, the trust roots): the command runs it before the
reactor starts, the admin API in a worker thread. Nothing is written: no serials, no DKIM
keys, no directories.
"""

from __future__ import annotations

import re
import ssl
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from rail.acme.storage import server_pem_path
from rail.config import Config
from rail.dkim.keys import KeyStore
from rail.dkim.names import a_label
from rail.dns.sources import load_zones, zone_domains
from rail.doctor.expected import (
    DomainExpectation,
    HostExpectation,
    domain_expectation,
    host_expectation,
)
from rail.pki.files import server_cert_path
from rail.shared.mirror import MirrorError, pull
from rail.shared.registry import SharedSource, registry_source

__all__ = ["DoctorError", "Inputs", "load_certificate", "load_inputs", "system_trust"]


_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class DoctorError(Exception):
    """The doctor cannot run (exit 1): the message is for the operator."""


@attrs.frozen
class Inputs:
    """What Rail would publish and serve, read from its configuration and data."""

    host: HostExpectation
    domains: tuple[DomainExpectation, ...]
    chain: tuple[x509.Certificate, ...]
    """Rail's current server certificate, leaf first; empty when none could be read."""
    certificate_source: str
    """Where the chain was read from, or why it was not."""
    trust: tuple[x509.Certificate, ...]
    """The roots the chain must lead to (the system's, unless a test says otherwise)."""
    acme_trust: tuple[x509.Certificate, ...]
    """``tls.acme.ca_file``'s certificates, which verify the ACME directory; empty when
    not set (the system's roots do)."""
    now: datetime

    @property
    def renew_before(self) -> timedelta | None:
        seconds = self.host.renew_before
        return None if seconds is None else timedelta(seconds=seconds)


def load_certificate(config: Config) -> tuple[tuple[x509.Certificate, ...], str]:
    """The chain Rail serves (as start-up would pick it) and where it came from. Under
    ACME before the first certificate, that is the one from Rail's own CA."""
    data_dir = config.data_dir
    paths: list[Path] = []
    if config.tls.mode == "files":
        assert config.tls.cert_file is not None
        paths.append(config.tls.cert_file)
    elif config.tls.mode == "acme":
        paths += [server_pem_path(data_dir), server_cert_path(data_dir)]
    else:
        paths.append(server_cert_path(data_dir))
    problems = []
    for path in paths:
        try:
            chain = tuple(x509.load_pem_x509_certificates(path.read_bytes()))
        except FileNotFoundError:
            problems.append(f"{path}: no such file")
            continue
        except OSError as e:
            problems.append(f"{path}: {e.strerror}")
            continue
        except ValueError:
            problems.append(f"{path}: no PEM certificate in it")
            continue
        return chain, str(path)
    return (), "; ".join(problems)


def _certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM bundle that loads; one the library refuses (or warns
    about: system bundles hold old roots with a zero serial) does not spoil the rest."""
    loaded = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for block in _PEM_BLOCK.findall(data):
            try:
                loaded.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                continue
    return tuple(loaded)


def system_trust() -> tuple[x509.Certificate, ...]:
    """The system's trust roots (OpenSSL's default CA file), or none if unreadable."""
    paths = ssl.get_default_verify_paths()
    for name in (paths.cafile, paths.openssl_cafile):
        if name is None:
            continue
        try:
            roots = _certificates(Path(name).read_bytes())
        except OSError:
            continue
        if roots:
            return roots
    return ()


def load_inputs(
    config: Config,
    now: float,
    domain: str | None = None,
    *,
    trust: Sequence[x509.Certificate] | None = None,
) -> Inputs:
    """The expectations for ``domain`` (default: every local domain) at ``now``.

    Raises :class:`DoctorError` for an unknown domain or no local domains, and what
    :func:`rail.dns.sources.load_zones` raises for an unreadable queue or registry.
    """
    domains = zone_domains(config, now)
    if domain is not None:
        name = a_label(domain)
        if name is None or name not in domains:
            listed = ", ".join(domains) or "none"
            raise DoctorError(f"{domain}: not a local domain (local: {listed})")
        domains = [name]
    if not domains:
        raise DoctorError("no local domains (set local_domains or issue a client certificate)")
    directory = config.data_dir / "dkim"
    shared = registry_source(config)
    if isinstance(shared, SharedSource):  # the nodes' keys are in the shared database
        try:
            pull(shared, config.data_dir, ("dkim/",))
        except MirrorError as e:
            raise DoctorError(str(e)) from None
    # Read the keys without creating anything: a missing directory means no keys yet.
    keys = KeyStore.open(directory) if directory.is_dir() else KeyStore(directory, {})
    zones = load_zones(config, keys, now, domains=domains, save_serials=False)
    records = [record for zone in zones for record in zone.records]
    chain, source = load_certificate(config)
    acme = config.tls.acme
    acme_trust: tuple[x509.Certificate, ...] = ()
    if acme is not None and acme.ca_file is not None:
        try:
            acme_trust = _certificates(acme.ca_file.read_bytes())
        except OSError as e:
            raise DoctorError(f"{acme.ca_file}: {e.strerror}") from None
    return Inputs(
        host=host_expectation(config, records),
        domains=tuple(
            domain_expectation(
                d, records, config.bounces.domain if config.bounces.enabled else None
            )
            for d in domains
        ),
        chain=chain,
        certificate_source=source,
        trust=tuple(system_trust() if trust is None else trust),
        acme_trust=acme_trust,
        now=datetime.fromtimestamp(now, UTC),
    )

"""PKI and ACME state a starting server needs, prepared before the reactor runs.

Runs synchronously in ``makeService`` on purpose: a missing or corrupt CA, key or
certificate must stop start-up with a clear message before any port is bound, and the
reactor is not yet running, so there is nothing to block.
"""

from __future__ import annotations

from datetime import datetime

import attrs
from twisted.logger import Logger

from rail.acme.storage import load_acme_material
from rail.config import Config
from rail.diskfull import is_disk_full
from rail.pki.ca import CertificateAuthority
from rail.pki.files import (
    PKIError,
    load_or_create_server_material,
    load_server_material,
)
from rail.pki.revocations import Revocations
from rail.pki.source import RegistrySource
from rail.pki.tls import ServerMaterial
from rail.shared.registry import SharedSource, export_ca_certificate, registry_source

__all__ = ["PKIState", "prepare_pki"]

_log = Logger()


@attrs.frozen
class PKIState:
    ca: CertificateAuthority
    server: ServerMaterial
    revocations: Revocations
    source: RegistrySource | None = None
    """Where the CA, registry and CRL live (None: the files under ``data_dir``)."""


def prepare_pki(config: Config, now: datetime) -> PKIState:
    """Load (or on first start create) the CA, the CRL and the server material.

    Raises ``PKIError`` naming the offending file.
    """
    source = registry_source(config)
    ca, _created = source.load_or_create_ca(config.hostname, now)
    if isinstance(source, SharedSource):
        # The CA certificate every node trusts, where `rail queue` and operators look.
        export_ca_certificate(config.data_dir, ca)
        # A single node moving to PostgreSQL: its registry (revocations included) first.
        copied = source.import_local(now)
        if copied:
            _log.info(
                "copied {count} certificates of {path} into the shared registry",
                count=copied,
                path=str(config.data_dir / "registry.sqlite3"),
            )
    # Re-publish the CRL from the registry so a lost or stale file cannot un-revoke
    # anything across a restart; on a full disk, serve that CRL from memory instead.
    unpublished = None
    try:
        source.publish_crl(ca, now)
    except PKIError as e:
        if not is_disk_full(e):
            raise
        unpublished = source.current_crl(ca, now)
        _log.warn(
            "disk full: CRL not rewritten ({error}); serving the registry's revocations"
            " from memory",
            error=str(e),
        )
    if config.tls.mode == "self_signed":
        leaf, key = load_or_create_server_material(
            config.data_dir, ca, config.hostname, now, unsaved=_unsaved
        )
        server = ServerMaterial(chain=(leaf,), key=key)
    elif config.tls.mode == "acme":
        server = _acme_material(config, ca, now)
    else:
        assert config.tls.cert_file is not None and config.tls.key_file is not None
        chain, key = load_server_material(config.tls.cert_file, config.tls.key_file)
        server = ServerMaterial(chain=tuple(chain), key=key)
    revocations = Revocations(source.crl(), ca.certificate)
    if unpublished is None:
        revocations.load()
    else:
        revocations.adopt(unpublished)
    return PKIState(ca=ca, server=server, revocations=revocations, source=source)


def _acme_material(config: Config, ca: CertificateAuthority, now: datetime) -> ServerMaterial:
    """The last ACME certificate if it is still usable, else one from Rail's own CA (as
    for ``self_signed``) until the ACME service gets one: a missing, expired or damaged
    ACME certificate must not keep the server from starting, the service will replace it.
    """
    try:
        material = load_acme_material(config.data_dir, now)
    except PKIError as e:
        _log.warn("not serving the saved ACME certificate: {problem}", problem=str(e))
        material = None
    if material is not None:
        return material
    leaf, key = load_or_create_server_material(
        config.data_dir, ca, config.hostname, now, unsaved=_unsaved
    )
    return ServerMaterial(chain=(leaf,), key=key)


def _unsaved(error: PKIError) -> None:
    _log.warn(
        "disk full: the renewed server certificate is served from memory, not saved ({error})",
        error=str(error),
    )

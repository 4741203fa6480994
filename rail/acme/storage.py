"""The ACME account key and the last issued certificate, on disk under ``data_dir/acme``.

Layout::

    acme/account.key   the account's EC P-256 key (0600), created on first use
    acme/server.pem    leaf, chain, then the certificate's private key (0600)

The certificate and its key share one file so a single atomic rename replaces both: a crash
can leave the old pair or the new pair, never a certificate beside the wrong key.
Synchronous: called at start-up and from the ACME worker thread, never on the reactor.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from rail.pki.files import KEY_MODE, PKIError, certificate_pem, write_file_atomic
from rail.pki.inspect import format_time
from rail.pki.keys import PrivateKey, load_private_key_pem, private_key_pem, public_key_der
from rail.pki.tls import ServerMaterial

__all__ = [
    "account_key_path",
    "acme_directory",
    "load_acme_material",
    "load_or_create_account_key",
    "save_acme_material",
    "server_pem_path",
]

_DIRECTORY_MODE = 0o700


def acme_directory(data_dir: Path) -> Path:
    return data_dir / "acme"


def account_key_path(data_dir: Path) -> Path:
    return acme_directory(data_dir) / "account.key"


def server_pem_path(data_dir: Path) -> Path:
    return acme_directory(data_dir) / "server.pem"


def _ensure_directory(data_dir: Path) -> None:
    directory = acme_directory(data_dir)
    try:
        directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
    except OSError as e:
        raise PKIError(f"{directory}: cannot create directory ({e.strerror})") from e


def load_or_create_account_key(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The account key, created (EC P-256, mode 0600) the first time.

    The CA knows the account by this key alone, so it is never replaced: an unreadable
    or foreign key file is an error for the operator, not something to overwrite.
    """
    path = account_key_path(data_dir)
    _ensure_directory(data_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            write_file_atomic(path, private_key_pem(key), KEY_MODE, replace=False)
        except FileExistsError:
            # Another process created it meanwhile: use theirs.
            return load_or_create_account_key(data_dir)
        except OSError as e:
            raise PKIError(f"{path}: cannot write ({e.strerror})") from e
        return key
    except OSError as e:
        raise PKIError(f"{path}: cannot read ({e.strerror})") from e
    try:
        loaded = load_private_key_pem(data)
    except ValueError as e:
        raise PKIError(f"{path}: {e}") from e
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise PKIError(f"{path}: the ACME account key must be an EC key")
    return loaded


def save_acme_material(data_dir: Path, material: ServerMaterial) -> Path:
    """Write the certificate chain and its key to ``server.pem`` (0600), atomically."""
    _ensure_directory(data_dir)
    path = server_pem_path(data_dir)
    data = b"".join(certificate_pem(cert) for cert in material.chain)
    data += private_key_pem(material.key)
    try:
        write_file_atomic(path, data, KEY_MODE)
    except OSError as e:
        raise PKIError(f"{path}: cannot write ({e.strerror})") from e
    return path


def load_acme_material(data_dir: Path, now: datetime) -> ServerMaterial | None:
    """The last issued certificate, or None if none was ever saved.

    Raises ``PKIError`` if the file is unreadable, malformed, its key does not match,
    or the certificate has expired: the caller falls back and orders a new one.
    """
    path = server_pem_path(data_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise PKIError(f"{path}: cannot read ({e.strerror})") from e
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        chain = []
    if not chain:
        raise PKIError(f"{path}: no PEM certificate in it")
    key: PrivateKey
    try:
        key = load_private_key_pem(data)
    except ValueError as e:
        raise PKIError(f"{path}: {e}") from e
    leaf = chain[0]
    if public_key_der(leaf.public_key()) != public_key_der(key.public_key()):
        raise PKIError(f"{path}: the private key does not match the first certificate")
    if leaf.not_valid_after_utc <= now:
        raise PKIError(f"{path}: certificate expired at {format_time(leaf.not_valid_after_utc)}")
    return ServerMaterial(chain=tuple(chain), key=key)

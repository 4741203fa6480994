"""Rail's PKI material on disk: the CA, its CRL and the server certificate.

Layout under ``data_dir``::

    ca/ca.crt   ca/ca.key (0600)   ca/crl.pem
    tls/server.crt   tls/server.key (0600)
    registry.sqlite3

Synchronous on purpose: the CLI calls these directly and the server only at start-up or from
a thread. Every error is a ``PKIError`` whose message starts with the file it is about, because
the operator's next step is always to look at that file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rail.diskfull import is_disk_full
from rail.pki.ca import CertificateAuthority, create_ca
from rail.pki.crl import crl_pem, parse_crl, revoked_serials
from rail.pki.inspect import format_time, issued_by
from rail.pki.issue import issue_server_certificate
from rail.pki.keys import PrivateKey, generate_private_key, load_private_key_pem, public_key_der
from rail.pki.keys import private_key_pem as _private_key_pem

__all__ = [
    "CERTIFICATE_MODE",
    "KEY_MODE",
    "SERVER_REUSE_MARGIN",
    "PKIError",
    "ca_cert_path",
    "ca_key_path",
    "certificate_pem",
    "crl_path",
    "load_ca",
    "load_crl_bytes",
    "load_or_create_ca",
    "load_or_create_server_material",
    "load_revoked_serials",
    "load_server_material",
    "server_cert_path",
    "server_key_path",
    "write_crl",
    "write_file_atomic",
    "write_key_pair",
]

KEY_MODE = 0o600
CERTIFICATE_MODE = 0o644
DIRECTORY_MODE = 0o700
SERVER_REUSE_MARGIN = timedelta(days=30)
"""A self-signed server certificate closer than this to expiry is replaced at start-up, so a
long-running development server never reaches the expiry date."""

_CA_MISSING_HINT = "the CA is created by 'rail init' or on first 'rail certs issue'"


class PKIError(Exception):
    """A problem with a PKI file; the message starts with the file's path."""


def ca_cert_path(data_dir: Path) -> Path:
    return data_dir / "ca" / "ca.crt"


def ca_key_path(data_dir: Path) -> Path:
    return data_dir / "ca" / "ca.key"


def crl_path(data_dir: Path) -> Path:
    return data_dir / "ca" / "crl.pem"


def server_cert_path(data_dir: Path) -> Path:
    return data_dir / "tls" / "server.crt"


def server_key_path(data_dir: Path) -> Path:
    return data_dir / "tls" / "server.key"


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: Path, data: bytes, mode: int, *, replace: bool = True) -> None:
    """Readers see the old file or the new one, never a torn one, even after a crash.

    The temporary file is created with ``mode`` from the start, so a key is never readable by
    others, not even for a moment. ``replace=False`` refuses (``FileExistsError``) to overwrite
    an existing file, atomically: used where overwriting would destroy an identity, the CA.
    """
    directory = path.parent
    temporary = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits the caller asked for
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
            os.unlink(temporary)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def write_key_pair(
    cert_path: Path,
    key_path: Path,
    cert: x509.Certificate,
    key: PrivateKey,
    *,
    replace: bool = True,
) -> None:
    """Write a certificate (0644) and its key (0600), the key first: after a crash there may
    be a key without a certificate, which is harmless, but never a certificate without its key.
    """
    _write(key_path, _private_key_pem(key), KEY_MODE, replace=replace)
    _write(cert_path, certificate_pem(cert), CERTIFICATE_MODE, replace=replace)


def _write(path: Path, data: bytes, mode: int, *, replace: bool = True) -> None:
    try:
        write_file_atomic(path, data, mode, replace=replace)
    except FileExistsError:
        raise PKIError(f"{path}: already exists; not overwriting it") from None
    except OSError as e:
        raise PKIError(f"{path}: cannot write ({e.strerror})") from e


def _read(path: Path, missing: str = "missing") -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PKIError(f"{path}: {missing}") from None
    except OSError as e:
        raise PKIError(f"{path}: cannot read ({e.strerror})") from e


def _load_key(path: Path, data: bytes) -> PrivateKey:
    try:
        return load_private_key_pem(data)
    except ValueError as e:
        raise PKIError(f"{path}: {e}") from e


def load_ca(data_dir: Path) -> CertificateAuthority:
    cert_path, key_path = ca_cert_path(data_dir), ca_key_path(data_dir)
    cert_data = _read(cert_path, f"missing ({_CA_MISSING_HINT})")
    key_data = _read(key_path, f"missing ({_CA_MISSING_HINT})")
    try:
        certificate = x509.load_pem_x509_certificate(cert_data)
    except ValueError as e:
        raise PKIError(f"{cert_path}: not a PEM certificate") from e
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        is_ca = constraints.value.ca
    except (x509.ExtensionNotFound, ValueError):
        is_ca = False
    if not is_ca:
        raise PKIError(f"{cert_path}: not a CA certificate (basicConstraints CA is not true)")
    private_key = _load_key(key_path, key_data)
    if public_key_der(private_key.public_key()) != public_key_der(certificate.public_key()):
        raise PKIError(f"{key_path}: private key does not match the certificate {cert_path}")
    return CertificateAuthority(certificate=certificate, private_key=private_key)


def _make_directory(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 for the directory itself if it is new;
    an existing directory keeps the mode the operator gave it."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIRECTORY_MODE)
    except FileExistsError:
        return
    os.chmod(path, DIRECTORY_MODE)


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Serialise creators across processes (the CLI and a starting server may race)."""
    path = directory / ".lock"
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, KEY_MODE)
    except OSError as e:
        raise PKIError(f"{path}: cannot open lock file ({e.strerror})") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ca_common_name(hostname: str) -> str:
    return f"Rail CA {hostname}"[:64]  # the X.520 upper bound for a CN


def load_or_create_ca(
    data_dir: Path, hostname: str, now: datetime
) -> tuple[CertificateAuthority, bool]:
    """The CA, created on first use. Returns ``(ca, created)``.

    Never replaces anything: a half-present CA (one of the two files) is an error, because a
    new CA would silently invalidate every certificate already handed out.
    """
    try:
        _make_directory(data_dir)
        _make_directory(data_dir / "ca")
    except OSError as e:
        raise PKIError(f"{e.filename}: cannot create directory ({e.strerror})") from e
    cert_path, key_path = ca_cert_path(data_dir), ca_key_path(data_dir)
    with directory_lock(cert_path.parent):
        cert_exists, key_exists = cert_path.exists(), key_path.exists()
        if cert_exists and key_exists:
            return load_ca(data_dir), False
        if cert_exists or key_exists:
            present, absent = (cert_path, key_path) if cert_exists else (key_path, cert_path)
            raise PKIError(
                f"{absent}: missing while {present} exists; refusing to create a new CA over it"
                f" (restore {absent.name}, or remove {present.name} if no certificate was"
                " ever issued)"
            )
        ca = create_ca(_ca_common_name(hostname), now)
        write_key_pair(cert_path, key_path, ca.certificate, ca.private_key, replace=False)
        return ca, True


def write_crl(data_dir: Path, crl: x509.CertificateRevocationList) -> None:
    _write(crl_path(data_dir), crl_pem(crl), CERTIFICATE_MODE)


def load_crl_bytes(data_dir: Path) -> bytes | None:
    """The CRL file's bytes, or ``None`` if none was written yet (nothing revoked so far)."""
    path = crl_path(data_dir)
    try:
        return _read(path)
    except PKIError:
        if not path.exists():
            return None
        raise


def load_revoked_serials(data_dir: Path, ca_cert: x509.Certificate) -> frozenset[int]:
    """The revoked serials from the CRL file, verified against ``ca_cert``."""
    data = load_crl_bytes(data_dir)
    if data is None:
        return frozenset()
    try:
        return revoked_serials(parse_crl(data), ca_cert)
    except ValueError as e:
        raise PKIError(f"{crl_path(data_dir)}: {e}") from e


def load_server_material(
    cert_file: Path, key_file: Path, *, now: datetime | None = None
) -> tuple[list[x509.Certificate], PrivateKey]:
    """An operator-supplied certificate chain (leaf first) and its key.

    An expired leaf is refused at start-up: serving it would make every client fail with an
    error far from its cause. ``now`` defaults to the wall clock (this is start-up code).
    """
    cert_data = _read(cert_file)
    key_data = _read(key_file)
    try:
        chain = x509.load_pem_x509_certificates(cert_data)
    except ValueError as e:
        raise PKIError(f"{cert_file}: not a PEM certificate") from e
    if not chain:
        raise PKIError(f"{cert_file}: not a PEM certificate")
    key = _load_key(key_file, key_data)
    key_der = public_key_der(key.public_key())
    leaf = chain[0]
    if public_key_der(leaf.public_key()) != key_der:
        if any(public_key_der(c.public_key()) == key_der for c in chain[1:]):
            raise PKIError(
                f"{cert_file}: the certificate matching {key_file} must come first in the file"
            )
        raise PKIError(f"{key_file}: private key does not match the certificate in {cert_file}")
    when = datetime.now(UTC) if now is None else now
    if leaf.not_valid_after_utc < when:
        raise PKIError(
            f"{cert_file}: certificate expired at {format_time(leaf.not_valid_after_utc)}"
        )
    return chain, key


def _names_host(cert: x509.Certificate, hostname: str) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return hostname.lower() in names


def load_or_create_server_material(
    data_dir: Path,
    ca: CertificateAuthority,
    hostname: str,
    now: datetime,
    unsaved: Callable[[PKIError], None] | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """The ``tls.self_signed`` server certificate, issued by Rail's CA.

    Reused while it is issued by this CA, names ``hostname`` and has more than
    ``SERVER_REUSE_MARGIN`` left; otherwise replaced (it identifies nothing worth keeping).
    With ``unsaved``, a replacement that cannot be written for lack of disk space is
    returned all the same, and ``unsaved`` is called with the error (a starting server
    serves it from memory and writes it at a later start).
    """
    cert_path, key_path = server_cert_path(data_dir), server_key_path(data_dir)
    try:
        _make_directory(cert_path.parent)
    except OSError as e:
        raise PKIError(f"{e.filename}: cannot create directory ({e.strerror})") from e
    with directory_lock(cert_path.parent):
        try:
            chain, key = load_server_material(cert_path, key_path, now=now)
        except PKIError:
            pass
        else:
            leaf = chain[0]
            if (
                leaf.not_valid_after_utc - now > SERVER_REUSE_MARGIN
                and issued_by(leaf, ca.certificate)
                and _names_host(leaf, hostname)
            ):
                return leaf, key
        key = generate_private_key("ecdsa-p256")
        cert = issue_server_certificate(
            ca, hostname, ("localhost", "127.0.0.1", "::1"), key.public_key(), now
        )
        try:
            write_key_pair(cert_path, key_path, cert, key)
        except PKIError as e:
            if unsaved is None or not is_disk_full(e):
                raise
            unsaved(e)
        return cert, key

"""Tests for rail.pki.files: the CA, CRL and server certificate on disk."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.crl import build_crl
from rail.pki.files import (
    PKIError,
    ca_cert_path,
    ca_key_path,
    certificate_pem,
    crl_path,
    load_ca,
    load_crl_bytes,
    load_or_create_ca,
    load_or_create_server_material,
    load_revoked_serials,
    load_server_material,
    server_cert_path,
    server_key_path,
    write_crl,
    write_file_atomic,
    write_key_pair,
)
from rail.pki.keys import generate_private_key, key_type_of, private_key_pem, public_key_der

from .helpers import NOW, issue_client, issue_server, make_ca, pem


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _same_key(a: object, b: object) -> bool:
    return public_key_der(a.public_key()) == public_key_der(b.public_key())  # type: ignore[attr-defined]


class WriteFileAtomicTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()

    def test_write_and_mode(self) -> None:
        """The file holds the data with exactly the requested mode; no temporary is left."""
        path = self.directory / "secret.key"
        write_file_atomic(path, b"one", 0o600)
        self.assertEqual(path.read_bytes(), b"one")
        self.assertEqual(_mode(path), 0o600)
        write_file_atomic(path, b"two", 0o644)
        self.assertEqual(path.read_bytes(), b"two")
        self.assertEqual(_mode(path), 0o644)
        self.assertEqual(sorted(os.listdir(self.directory)), ["secret.key"])

    def test_no_replace(self) -> None:
        """With replace=False an existing file is kept and FileExistsError raised."""
        path = self.directory / "ca.key"
        write_file_atomic(path, b"original", 0o600, replace=False)
        self.assertRaises(FileExistsError, write_file_atomic, path, b"new", 0o600, replace=False)
        self.assertEqual(path.read_bytes(), b"original")
        self.assertEqual(sorted(os.listdir(self.directory)), ["ca.key"])

    def test_key_pair_modes(self) -> None:
        """write_key_pair writes the key 0600 and the certificate 0644."""
        ca = make_ca()
        cert, key = issue_client(ca)
        cert_path, key_path = self.directory / "myapp.crt", self.directory / "myapp.key"
        write_key_pair(cert_path, key_path, cert, key)
        self.assertEqual(_mode(key_path), 0o600)
        self.assertEqual(_mode(cert_path), 0o644)
        self.assertEqual(cert_path.read_bytes(), pem(cert))
        self.assertEqual(key_path.read_bytes(), private_key_pem(key))

    def test_key_pair_no_replace(self) -> None:
        """write_key_pair with replace=False refuses to overwrite, naming the file."""
        cert, key = issue_client(make_ca())
        cert_path, key_path = self.directory / "myapp.crt", self.directory / "myapp.key"
        key_path.write_bytes(b"precious")
        e = self.assertRaises(
            PKIError, write_key_pair, cert_path, key_path, cert, key, replace=False
        )
        self.assertEqual(str(e), f"{key_path}: already exists; not overwriting it")
        self.assertEqual(key_path.read_bytes(), b"precious")


class LoadOrCreateCATests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data_dir = Path(self.mktemp())

    def test_create_then_load(self) -> None:
        """The first call creates the CA; later calls load the same one."""
        ca, created = load_or_create_ca(self.data_dir, "mx.example", NOW)
        self.assertTrue(created)
        self.assertEqual(ca.certificate.subject.rfc4514_string(), "CN=Rail CA mx.example,O=Rail")
        self.assertEqual(key_type_of(ca.certificate.public_key()), "ed25519")
        again, created = load_or_create_ca(self.data_dir, "other.example", NOW)
        self.assertFalse(created)
        self.assertEqual(again.certificate, ca.certificate)
        self.assertTrue(_same_key(again.private_key, ca.private_key))
        self.assertEqual(load_ca(self.data_dir).certificate, ca.certificate)

    def test_modes(self) -> None:
        """The key is 0600, and the directories Rail creates are 0700."""
        load_or_create_ca(self.data_dir, "mx.example", NOW)
        self.assertEqual(_mode(ca_key_path(self.data_dir)), 0o600)
        self.assertEqual(_mode(ca_cert_path(self.data_dir)), 0o644)
        self.assertEqual(_mode(self.data_dir), 0o700)
        self.assertEqual(_mode(self.data_dir / "ca"), 0o700)

    def test_existing_data_dir_mode_kept(self) -> None:
        """An existing data_dir keeps the mode the operator gave it."""
        self.data_dir.mkdir(mode=0o750)
        os.chmod(self.data_dir, 0o750)  # noqa: S103 (any mode other than Rail's 0700)
        load_or_create_ca(self.data_dir, "mx.example", NOW)
        self.assertEqual(_mode(self.data_dir), 0o750)

    def test_long_hostname(self) -> None:
        """A hostname too long for a CN is cut to the 64-character limit."""
        ca, _ = load_or_create_ca(self.data_dir, "h" * 100 + ".example", NOW)
        cn = ca.certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        self.assertEqual(len(cn), 64)

    def test_only_certificate(self) -> None:
        """A certificate without its key is an error, and nothing is overwritten."""
        load_or_create_ca(self.data_dir, "mx.example", NOW)
        key_path, cert_path = ca_key_path(self.data_dir), ca_cert_path(self.data_dir)
        key_path.unlink()
        before = cert_path.read_bytes()
        e = self.assertRaises(PKIError, load_or_create_ca, self.data_dir, "mx.example", NOW)
        self.assertEqual(
            str(e),
            f"{key_path}: missing while {cert_path} exists; refusing to create a new CA over it"
            " (restore ca.key, or remove ca.crt if no certificate was ever issued)",
        )
        self.assertEqual(cert_path.read_bytes(), before)
        self.assertFalse(key_path.exists())

    def test_only_key(self) -> None:
        """A key without its certificate is an error, and nothing is overwritten."""
        load_or_create_ca(self.data_dir, "mx.example", NOW)
        key_path, cert_path = ca_key_path(self.data_dir), ca_cert_path(self.data_dir)
        cert_path.unlink()
        before = key_path.read_bytes()
        e = self.assertRaises(PKIError, load_or_create_ca, self.data_dir, "mx.example", NOW)
        self.assertTrue(str(e).startswith(f"{cert_path}: missing while {key_path} exists"))
        self.assertEqual(key_path.read_bytes(), before)


class LoadCATests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data_dir = Path(self.mktemp())
        load_or_create_ca(self.data_dir, "mx.example", NOW)
        self.cert_path = ca_cert_path(self.data_dir)
        self.key_path = ca_key_path(self.data_dir)

    def test_missing(self) -> None:
        """A missing CA names the file and how the CA gets created."""
        empty = Path(self.mktemp())
        e = self.assertRaises(PKIError, load_ca, empty)
        self.assertEqual(
            str(e),
            f"{ca_cert_path(empty)}: missing (the CA is created by 'rail init' or on first"
            " 'rail certs issue')",
        )

    def test_missing_key(self) -> None:
        """A missing key file is named."""
        self.key_path.unlink()
        e = self.assertRaises(PKIError, load_ca, self.data_dir)
        self.assertTrue(str(e).startswith(f"{self.key_path}: missing ("))

    def test_corrupt_key(self) -> None:
        """A key file that is not a PEM key is named."""
        self.key_path.write_bytes(b"not a key")
        e = self.assertRaises(PKIError, load_ca, self.data_dir)
        self.assertEqual(str(e), f"{self.key_path}: not a PEM private key")

    def test_corrupt_certificate(self) -> None:
        """A certificate file that is not a PEM certificate is named."""
        self.cert_path.write_bytes(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )
        e = self.assertRaises(PKIError, load_ca, self.data_dir)
        self.assertEqual(str(e), f"{self.cert_path}: not a PEM certificate")

    def test_mismatched_key(self) -> None:
        """A key that does not belong to the certificate is refused."""
        self.key_path.write_bytes(private_key_pem(generate_private_key("ed25519")))
        e = self.assertRaises(PKIError, load_ca, self.data_dir)
        self.assertEqual(
            str(e),
            f"{self.key_path}: private key does not match the certificate {self.cert_path}",
        )

    def test_not_a_ca(self) -> None:
        """A non-CA certificate in ca.crt is refused."""
        cert, key = issue_client(make_ca())
        write_key_pair(self.cert_path, self.key_path, cert, key)
        e = self.assertRaises(PKIError, load_ca, self.data_dir)
        self.assertEqual(
            str(e), f"{self.cert_path}: not a CA certificate (basicConstraints CA is not true)"
        )


class CRLFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data_dir = Path(self.mktemp())
        self.ca, _ = load_or_create_ca(self.data_dir, "mx.example", NOW)

    def test_none_yet(self) -> None:
        """Before any CRL is written there are no revocations."""
        self.assertIsNone(load_crl_bytes(self.data_dir))
        self.assertEqual(load_revoked_serials(self.data_dir, self.ca.certificate), frozenset())

    def test_round_trip(self) -> None:
        """A written CRL is read back and verified."""
        write_crl(self.data_dir, build_crl(self.ca, [(42, NOW)], NOW))
        self.assertEqual(_mode(crl_path(self.data_dir)), 0o644)
        self.assertEqual(load_revoked_serials(self.data_dir, self.ca.certificate), {42})

    def test_foreign_crl(self) -> None:
        """A CRL signed by another CA is an error naming the file."""
        write_crl(self.data_dir, build_crl(make_ca(common_name="Rail CA mx.example"), [], NOW))
        e = self.assertRaises(PKIError, load_revoked_serials, self.data_dir, self.ca.certificate)
        self.assertEqual(
            str(e), f"{crl_path(self.data_dir)}: CRL signature does not verify with the CA key"
        )

    def test_corrupt_crl(self) -> None:
        """A corrupt CRL file is an error naming the file."""
        crl_path(self.data_dir).write_bytes(b"junk")
        e = self.assertRaises(PKIError, load_revoked_serials, self.data_dir, self.ca.certificate)
        self.assertEqual(
            str(e), f"{crl_path(self.data_dir)}: not a PEM or DER certificate revocation list"
        )


class ServerMaterialTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data_dir = Path(self.mktemp())
        self.ca, _ = load_or_create_ca(self.data_dir, "mx.example", NOW)

    def test_create(self) -> None:
        """A P-256 certificate for the hostname and loopback names is issued by the CA."""
        cert, key = load_or_create_server_material(self.data_dir, self.ca, "mx.example", NOW)
        self.assertEqual(key_type_of(key.public_key()), "ecdsa-p256")
        cert.verify_directly_issued_by(self.ca.certificate)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["mx.example", "localhost"])
        self.assertEqual(
            [str(ip) for ip in san.get_values_for_type(x509.IPAddress)], ["127.0.0.1", "::1"]
        )
        self.assertEqual(_mode(server_key_path(self.data_dir)), 0o600)
        self.assertEqual(server_cert_path(self.data_dir).read_bytes(), certificate_pem(cert))

    def test_reuse(self) -> None:
        """A still-good certificate is reused on the next start."""
        first, key = load_or_create_server_material(self.data_dir, self.ca, "mx.example", NOW)
        later = NOW + timedelta(days=300)
        second, key2 = load_or_create_server_material(self.data_dir, self.ca, "mx.example", later)
        self.assertEqual(first, second)
        self.assertTrue(_same_key(key, key2))

    def test_renew_near_expiry(self) -> None:
        """Within 30 days of expiry a new certificate replaces the old one."""
        first, _ = load_or_create_server_material(self.data_dir, self.ca, "mx.example", NOW)
        later = NOW + timedelta(days=368)
        second, _ = load_or_create_server_material(self.data_dir, self.ca, "mx.example", later)
        self.assertNotEqual(first, second)
        self.assertEqual(second.not_valid_after_utc, later + timedelta(days=397))

    def test_renew_other_hostname(self) -> None:
        """A changed hostname gets a new certificate."""
        first, _ = load_or_create_server_material(self.data_dir, self.ca, "mx.example", NOW)
        second, _ = load_or_create_server_material(self.data_dir, self.ca, "mail.example", NOW)
        self.assertNotEqual(first, second)

    def test_renew_other_ca(self) -> None:
        """A certificate from another CA (e.g. a re-created one) is replaced."""
        first, _ = load_or_create_server_material(self.data_dir, make_ca(), "mx.example", NOW)
        second, _ = load_or_create_server_material(self.data_dir, self.ca, "mx.example", NOW)
        self.assertNotEqual(first, second)
        second.verify_directly_issued_by(self.ca.certificate)

    def test_renew_corrupt(self) -> None:
        """A corrupt key file is replaced rather than stopping a development server."""
        load_or_create_server_material(self.data_dir, self.ca, "mx.example", NOW)
        server_key_path(self.data_dir).write_bytes(b"junk")
        cert, key = load_or_create_server_material(self.data_dir, self.ca, "mx.example", NOW)
        self.assertTrue(_same_key(cert, key))


class LoadServerMaterialTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.ca = make_ca()
        self.cert, self.key = issue_server(self.ca, "mx.example")
        self.cert_file = self.directory / "server.crt"
        self.key_file = self.directory / "server.key"
        self.cert_file.write_bytes(pem(self.cert) + pem(self.ca.certificate))
        self.key_file.write_bytes(private_key_pem(self.key))

    def test_chain(self) -> None:
        """The leaf and chain are returned in file order with the key."""
        chain, key = load_server_material(self.cert_file, self.key_file, now=NOW)
        self.assertEqual(chain, [self.cert, self.ca.certificate])
        self.assertTrue(_same_key(key, self.key))

    def test_missing(self) -> None:
        """Missing files are named."""
        e = self.assertRaises(
            PKIError, load_server_material, self.directory / "nope.crt", self.key_file, now=NOW
        )
        self.assertEqual(str(e), f"{self.directory / 'nope.crt'}: missing")
        e = self.assertRaises(
            PKIError, load_server_material, self.cert_file, self.directory / "nope.key", now=NOW
        )
        self.assertEqual(str(e), f"{self.directory / 'nope.key'}: missing")

    def test_corrupt(self) -> None:
        """A file without a certificate, or a bad key, is named."""
        self.cert_file.write_bytes(b"hello")
        e = self.assertRaises(
            PKIError, load_server_material, self.cert_file, self.key_file, now=NOW
        )
        self.assertEqual(str(e), f"{self.cert_file}: not a PEM certificate")
        self.cert_file.write_bytes(pem(self.cert))
        self.key_file.write_bytes(b"hello")
        e = self.assertRaises(
            PKIError, load_server_material, self.cert_file, self.key_file, now=NOW
        )
        self.assertEqual(str(e), f"{self.key_file}: not a PEM private key")

    def test_mismatch(self) -> None:
        """A key that matches no certificate in the file is refused."""
        self.key_file.write_bytes(private_key_pem(generate_private_key("ecdsa-p256")))
        e = self.assertRaises(
            PKIError, load_server_material, self.cert_file, self.key_file, now=NOW
        )
        self.assertEqual(
            str(e),
            f"{self.key_file}: private key does not match the certificate in {self.cert_file}",
        )

    def test_wrong_order(self) -> None:
        """A chain whose leaf is not first gets a message saying so."""
        self.cert_file.write_bytes(pem(self.ca.certificate) + pem(self.cert))
        e = self.assertRaises(
            PKIError, load_server_material, self.cert_file, self.key_file, now=NOW
        )
        self.assertEqual(
            str(e),
            f"{self.cert_file}: the certificate matching {self.key_file}"
            " must come first in the file",
        )

    def test_expired(self) -> None:
        """An expired leaf is refused with its expiry time."""
        later = NOW + timedelta(days=398)
        e = self.assertRaises(
            PKIError, load_server_material, self.cert_file, self.key_file, now=later
        )
        self.assertEqual(str(e), f"{self.cert_file}: certificate expired at 2027-04-29T12:00:00Z")

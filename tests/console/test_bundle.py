"""``rail certs issue --admin --p12``: a password-protected PKCS#12 bundle for a browser."""

from __future__ import annotations

import getpass
import stat

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.test_cli import _CLITestCase


class BundleTests(_CLITestCase):
    def admin(self, *extra: str) -> tuple[int, str, str]:
        return self.rail(
            "certs", "issue", "--config", str(self.config), "--name", "ops", "--admin",
            "--out", str(self.dir), *extra,
        )  # fmt: skip

    def test_bundle_from_password_file(self) -> None:
        """--p12 with --p12-password-file writes NAME.p12 (mode 0600) that opens with
        that password and holds the certificate, an ECDSA key (browsers offer no
        Ed25519 client keys) and Rail's CA."""
        secret = self.dir / "pw"
        secret.write_text("correct horse\n")
        code, out, err = self.admin("--p12", "--p12-password-file", str(secret))
        self.assertEqual(code, 0, err)
        bundle = self.dir / "ops.p12"
        self.assertIn(f"wrote    {bundle}", out)
        self.assertEqual(stat.S_IMODE(bundle.stat().st_mode), 0o600)
        loaded = pkcs12.load_pkcs12(bundle.read_bytes(), b"correct horse")
        assert loaded.cert is not None
        self.assertIsInstance(loaded.key, ec.EllipticCurvePrivateKey)
        self.assertEqual(loaded.cert.friendly_name, b"ops")
        self.assertEqual(len(loaded.additional_certs), 1)
        self.assertEqual(self.listed()[0]["role"], "admin")

    def test_password_prompt(self) -> None:
        """Without a file the password is asked twice; two different answers issue
        nothing (exit 2)."""
        answers = iter(["first-password", "other-password"])
        self.patch(getpass, "getpass", lambda prompt: next(answers))
        code, out, err = self.admin("--p12")
        self.assertEqual(code, 2)
        self.assertIn("the passwords differ", err)
        self.assertFalse((self.dir / "ops.crt").exists())
        self.patch(getpass, "getpass", lambda prompt: "same-password")
        code, out, err = self.admin("--p12")
        self.assertEqual(code, 0, err)
        pkcs12.load_pkcs12((self.dir / "ops.p12").read_bytes(), b"same-password")

    def test_refusals(self) -> None:
        """An Ed25519 key, a short password and a password file without --p12 are
        usage errors (exit 2) that issue nothing."""
        secret = self.dir / "pw"
        secret.write_text("long enough\n")
        code, out, err = self.admin(
            "--p12", "--p12-password-file", str(secret), "--key-type", "ed25519"
        )
        self.assertEqual(code, 2)
        self.assertIn("Ed25519", err)
        short = self.dir / "short"
        short.write_text("abc\n")
        code, out, err = self.admin("--p12", "--p12-password-file", str(short))
        self.assertEqual(code, 2)
        self.assertIn("at least 8", err)
        code, out, err = self.admin("--p12-password-file", str(secret))
        self.assertEqual(code, 2)
        self.assertEqual(self.listed(), [])

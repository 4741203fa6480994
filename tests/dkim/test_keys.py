"""The DKIM key store: files and modes, generations, publishing, errors and reload."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.trial.unittest import SynchronousTestCase

from rail.dkim.keys import DKIMKeyError, KeyStore
from rail.dkim.records import PublishedKey
from rail.dkim.sign import sign
from tests.dkim.helpers import MESSAGE, dns_table, verify_each

T1 = 1795237702.0  # Sat, 21 Nov 2026 04:28:22 UTC
T2 = T1 + 3600.0
T3 = T1 + 2 * 86400.0  # Mon, 23 Nov 2026


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class _StoreTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()) / "dkim"

    def open(self) -> KeyStore:
        return KeyStore.open(self.directory)


class EnsureTests(_StoreTestCase):
    def test_files_and_modes(self) -> None:
        """First start makes the directory tree 0700 and the state and both key files
        0600, named after the generation's selectors."""
        store = self.open()
        self.assertEqual(store.ensure(["example.com"], T1), ["example.com"])
        domain = self.directory / "example.com"
        self.assertEqual(_mode(self.directory), 0o700)
        self.assertEqual(_mode(domain), 0o700)
        names = sorted(p.name for p in domain.iterdir() if not p.name.startswith("."))
        self.assertEqual(names, ["r20261121e.key", "r20261121r.key", "state.json"])
        for name in names:
            self.assertEqual(_mode(domain / name), 0o600, name)
        state = json.loads((domain / "state.json").read_text())
        self.assertEqual(
            state, {"version": 1, "generations": [{"name": "r20261121", "activated_at": T1}]}
        )
        self.assertEqual([p for p in domain.iterdir() if p.name.endswith(".tmp")], [])

    def test_idempotent(self) -> None:
        """A second ensure, in the same store or a new one, creates nothing and leaves
        the key files as they were."""
        store = self.open()
        store.ensure(["example.com"], T1)
        domain = self.directory / "example.com"
        before = {p.name: p.read_bytes() for p in domain.iterdir()}
        self.assertEqual(store.ensure(["example.com"], T2), [])
        self.assertEqual(self.open().ensure(["example.com", "EXAMPLE.com."], T3), [])
        self.assertEqual({p.name: p.read_bytes() for p in domain.iterdir()}, before)

    def test_created_elsewhere(self) -> None:
        """A domain another process created after this store was opened is loaded, not
        made again."""
        store = self.open()
        self.open().ensure(["example.com"], T1)
        self.assertEqual(store.ensure(["example.com"], T2), [])
        keys = store.signing_keys("example.com", T2)
        assert keys is not None
        self.assertEqual(keys.ed25519_selector, "r20261121e")

    def test_normalised(self) -> None:
        """Domains are compared lower-case and stored as A-labels, each once."""
        store = self.open()
        created = store.ensure(["Bücher.Example", "xn--bcher-kva.example", "A.Example"], T1)
        self.assertEqual(created, ["xn--bcher-kva.example", "a.example"])
        self.assertEqual(store.domains(), ["a.example", "xn--bcher-kva.example"])
        self.assertTrue((self.directory / "xn--bcher-kva.example" / "state.json").exists())
        self.assertIsNotNone(store.signing_keys("bücher.example", T1))

    def test_invalid_domain(self) -> None:
        """A name that is not a domain is a ValueError, and nothing is written."""
        store = self.open()
        with self.assertRaises(ValueError):
            store.ensure(["../etc"], T1)
        self.assertEqual(list(self.directory.iterdir()), [])


class SigningKeysTests(_StoreTestCase):
    def test_unknown_domain(self) -> None:
        """A domain without keys has no signing keys."""
        self.assertIsNone(self.open().signing_keys("example.com", T1))

    def test_keys_sign_and_published_records_verify(self) -> None:
        """The keys handed out sign mail that verifies against the published records."""
        store = self.open()
        store.ensure(["example.com"], T1)
        keys = store.signing_keys("example.com", T1)
        assert keys is not None
        self.assertEqual(
            (keys.domain, keys.ed25519_selector, keys.rsa_selector),
            ("example.com", "r20261121e", "r20261121r"),
        )
        table = dns_table("example.com", store.published("example.com", None))
        results = verify_each(sign(MESSAGE, keys, T1) + MESSAGE, table)
        self.assertEqual(results, [("rsa-sha256", True), ("ed25519-sha256", True)])

    def test_by_received_at(self) -> None:
        """A message is signed with the generation current when it was received; one
        received before any key existed with the first generation."""
        store = self.open()
        store.ensure(["example.com"], T1)
        second = store.rotate("example.com", T2)
        third = store.rotate("example.com", T3)
        self.assertEqual(second.name, "r20261121-2")
        self.assertEqual(third.name, "r20261123")

        def selector(received_at: float) -> str:
            keys = store.signing_keys("example.com", received_at)
            assert keys is not None
            return keys.rsa_selector

        self.assertEqual(selector(T1 - 10), "r20261121r")
        self.assertEqual(selector(T1), "r20261121r")
        self.assertEqual(selector(T2 - 0.001), "r20261121r")
        self.assertEqual(selector(T2), "r20261121-2r")
        self.assertEqual(selector(T3 - 0.001), "r20261121-2r")
        self.assertEqual(selector(T3), "r20261123r")

    def test_cached(self) -> None:
        """Keys are loaded once: repeated look-ups return the same objects."""
        store = self.open()
        store.ensure(["example.com"], T1)
        self.assertIs(store.signing_keys("example.com", T1), store.signing_keys("example.com", T2))


class RotateTests(_StoreTestCase):
    def _selectors(self, records: list[PublishedKey]) -> list[tuple[str, str]]:
        return [(r.selector, r.algorithm) for r in records]

    def test_published(self) -> None:
        """The newest generation is always published; an older one while the oldest
        pending message was received before its successor took over."""
        store = self.open()
        store.ensure(["example.com"], T1)
        self.assertEqual(
            self._selectors(store.published("example.com", None)),
            [("r20261121e", "ed25519"), ("r20261121r", "rsa")],
        )
        store.rotate("example.com", T2)
        both = [
            ("r20261121e", "ed25519"),
            ("r20261121r", "rsa"),
            ("r20261121-2e", "ed25519"),
            ("r20261121-2r", "rsa"),
        ]
        self.assertEqual(self._selectors(store.published("example.com", None)), both[2:])
        self.assertEqual(self._selectors(store.published("example.com", T1)), both)
        self.assertEqual(self._selectors(store.published("example.com", T2 - 0.001)), both)
        self.assertEqual(self._selectors(store.published("example.com", T2)), both[2:])
        self.assertEqual(self._selectors(store.published("example.com", T3)), both[2:])

    def test_published_unknown(self) -> None:
        """A domain without keys publishes nothing."""
        self.assertEqual(self.open().published("example.com", None), [])

    def test_record_values(self) -> None:
        """Records are DKIM1 TXT values of the generation's own public keys."""
        store = self.open()
        store.ensure(["example.com"], T1)
        ed, rsa = store.published("example.com", None)
        self.assertTrue(ed.txt.startswith("v=DKIM1; k=ed25519; p="))
        self.assertTrue(rsa.txt.startswith("v=DKIM1; k=rsa; p="))

    def test_rotate_writes_state(self) -> None:
        """Rotation appends to the state file and adds two 0600 key files."""
        store = self.open()
        store.ensure(["example.com"], T1)
        generation = store.rotate("example.com", T2)
        self.assertEqual(generation.activated_at, T2)
        domain = self.directory / "example.com"
        state = json.loads((domain / "state.json").read_text())
        self.assertEqual(
            state["generations"],
            [
                {"name": "r20261121", "activated_at": T1},
                {"name": "r20261121-2", "activated_at": T2},
            ],
        )
        for selector in ("r20261121-2e", "r20261121-2r"):
            self.assertEqual(_mode(domain / f"{selector}.key"), 0o600)

    def test_activated_at(self) -> None:
        """activated_at is when the keys signing at a time began: the first generation's
        before a rotation takes effect, the new one's after; None without keys."""
        store = self.open()
        store.ensure(["example.com"], T1)
        store.rotate("example.com", T2)
        self.assertEqual(store.activated_at("example.com", T1 + 1), T1)
        self.assertEqual(store.activated_at("Example.COM", T2 + 1), T2)
        self.assertIsNone(store.activated_at("other.example", T2))

    def test_rotate_without_keys(self) -> None:
        """Rotating a domain without keys makes its first generation."""
        store = self.open()
        generation = store.rotate("example.com", T1)
        self.assertEqual(generation.name, "r20261121")
        self.assertEqual(store.domains(), ["example.com"])

    def test_clock_backwards(self) -> None:
        """A rotation with a clock behind the last activation activates at that moment,
        so generations stay in order."""
        store = self.open()
        store.ensure(["example.com"], T2)
        generation = store.rotate("example.com", T1)
        self.assertEqual(generation.activated_at, T2)
        keys = store.signing_keys("example.com", T2)
        assert keys is not None
        self.assertEqual(keys.rsa_selector, "r20261121-2r")

    def test_rotation_elsewhere_not_lost(self) -> None:
        """A rotation starts from the state on disk, so rotations by two stores both
        count."""
        first, second = self.open(), self.open()
        first.ensure(["example.com"], T1)
        second.ensure(["example.com"], T1)
        first.rotate("example.com", T2)
        generation = second.rotate("example.com", T3)
        self.assertEqual(generation.name, "r20261123")
        names = [
            g["name"]
            for g in json.loads((self.directory / "example.com" / "state.json").read_text())[
                "generations"
            ]
        ]
        self.assertEqual(names, ["r20261121", "r20261121-2", "r20261123"])


class ReloadTests(_StoreTestCase):
    def test_picks_up_rotation(self) -> None:
        """After another store rotates, reload signs new mail with the new generation
        and publishes its records."""
        server = self.open()
        server.ensure(["example.com"], T1)
        self.open().rotate("example.com", T2)
        keys = server.signing_keys("example.com", T3)
        assert keys is not None
        self.assertEqual(keys.rsa_selector, "r20261121r")
        server.reload()
        keys = server.signing_keys("example.com", T3)
        assert keys is not None
        self.assertEqual(keys.rsa_selector, "r20261121-2r")
        self.assertEqual(len(server.published("example.com", T1)), 4)

    def test_picks_up_new_domain(self) -> None:
        """A domain created by another process appears on reload."""
        server = self.open()
        self.open().ensure(["example.org"], T1)
        server.reload()
        self.assertEqual(server.domains(), ["example.org"])

    def test_unchanged_files_keep_keys(self) -> None:
        """Reload keeps the loaded keys of unchanged files (same objects)."""
        server = self.open()
        server.ensure(["example.com"], T1)
        before = server.signing_keys("example.com", T1)
        server.reload()
        self.assertIs(server.signing_keys("example.com", T1), before)

    def test_corrupt_state_keeps_working_keys(self) -> None:
        """A corrupt state file makes reload fail naming it, and the keys in use stay."""
        server = self.open()
        server.ensure(["example.com"], T1)
        before = server.signing_keys("example.com", T1)
        records = server.published("example.com", None)
        state = self.directory / "example.com" / "state.json"
        state.write_text("{not json")
        with self.assertRaises(DKIMKeyError) as caught:
            server.reload()
        self.assertIn(str(state), str(caught.exception))
        self.assertIs(server.signing_keys("example.com", T1), before)
        self.assertEqual(server.published("example.com", None), records)

    def test_replaced_key_file_is_reloaded(self) -> None:
        """A key file replaced on disk is read again, not served from memory."""
        server = self.open()
        server.ensure(["example.com"], T1)
        other = Path(self.mktemp()) / "dkim"
        KeyStore.open(other).ensure(["example.com"], T1)
        name = "r20261121e.key"
        (self.directory / "example.com" / name).write_bytes(
            (other / "example.com" / name).read_bytes()
        )
        server.reload()
        self.assertEqual(
            server.published("example.com", None)[0],
            KeyStore.open(other).published("example.com", None)[0],
        )


class CorruptionTests(_StoreTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.open().ensure(["example.com"], T1)
        self.domain = self.directory / "example.com"

    def assertNamed(self, path: Path) -> None:
        with self.assertRaises(DKIMKeyError) as caught:
            self.open()
        message = str(caught.exception)
        self.assertTrue(message.startswith(str(path)), message)
        self.assertEqual(len(message.splitlines()), 1)

    def test_state_not_json(self) -> None:
        """A state file that is not JSON is an error naming it."""
        (self.domain / "state.json").write_bytes(b"\x00garbage")
        self.assertNamed(self.domain / "state.json")

    def test_state_wrong_shape(self) -> None:
        """A state file with the wrong structure is an error naming it."""
        (self.domain / "state.json").write_text('{"version": 1, "generations": []}')
        self.assertNamed(self.domain / "state.json")

    def test_key_garbage(self) -> None:
        """A key file that is not a PEM key is an error naming it."""
        (self.domain / "r20261121r.key").write_text("-----BEGIN PRIVATE KEY-----\nxx\n")
        self.assertNamed(self.domain / "r20261121r.key")

    def test_key_missing(self) -> None:
        """A key file named by the state but absent is an error naming it."""
        (self.domain / "r20261121e.key").unlink()
        self.assertNamed(self.domain / "r20261121e.key")

    def test_key_wrong_type(self) -> None:
        """An RSA key where the ed25519 key belongs is an error naming the file."""
        ed = self.domain / "r20261121e.key"
        ed.write_bytes((self.domain / "r20261121r.key").read_bytes())
        self.assertNamed(ed)

    def test_key_damaged(self) -> None:
        """An RSA key whose halves do not belong together (here its public exponent
        changed, as a damaged file could have it) is an error naming the file, not a key
        whose signatures the published record would not verify."""
        path = self.domain / "r20261121r.key"
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        numbers = key.private_numbers()
        public = numbers.public_numbers
        damaged = rsa.RSAPrivateNumbers(
            p=numbers.p,
            q=numbers.q,
            d=numbers.d,
            dmp1=numbers.dmp1,
            dmq1=numbers.dmq1,
            iqmp=numbers.iqmp,
            public_numbers=rsa.RSAPublicNumbers(public.e + 2, public.n),
        ).private_key(unsafe_skip_rsa_key_validation=True)
        path.write_bytes(
            damaged.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.assertNamed(path)
        with self.assertRaises(DKIMKeyError) as caught:
            self.open()
        self.assertIn("damaged RSA key", str(caught.exception))

    def test_key_unreadable(self) -> None:
        """A key file that cannot be read (here: a directory) is an error naming it."""
        ed = self.domain / "r20261121e.key"
        ed.unlink()
        ed.mkdir()
        self.assertNamed(ed)

    def test_foreign_entries_ignored(self) -> None:
        """Directories without a state file and stray files are not domains."""
        (self.directory / "half.example").mkdir()
        (self.directory / "README").write_text("notes")
        self.assertEqual(self.open().domains(), ["example.com"])

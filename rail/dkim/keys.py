"""DKIM private keys on disk, per local domain, and the generations that rotate them.

Layout under ``data_dir/dkim`` (directories 0700, files 0600)::

    example.com/state.json          {"version": 1, "generations": [{"name", "activated_at"}]}
    example.com/r20261121e.key      ed25519, PKCS#8 PEM (selector r20261121e)
    example.com/r20261121r.key      rsa2048, PKCS#8 PEM (selector r20261121r)

Every file is written atomically (temporary file, fsync, rename, fsync of the directory),
keys before the state that names them, so a crash leaves either the old generation list
or the new one with its keys in place. Writers of one domain (a starting server, ``rail
dkim rotate``) are serialised by a lock file in the domain's directory.

Synchronous and free of Twisted: the CLI calls it directly and the server at start-up or
from a thread. Keys are loaded once and kept in memory; :meth:`KeyStore.reload` swaps in
a new view of the disk as a whole, or, if anything is wrong with it, keeps the old one.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import attrs
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from rail.dkim.generations import (
    Generation,
    decode_state,
    encode_state,
    needed,
    new_name,
    signing_generation,
)
from rail.dkim.names import a_label
from rail.dkim.records import PublishedKey, txt_value
from rail.dkim.sign import DomainKeys
from rail.pki.files import PKIError, directory_lock, write_file_atomic

__all__ = ["DKIMKeyError", "Guard", "KeyStore"]

Guard = Callable[[Callable[[], list[str]]], list[str]]
"""Runs a creation of keys and returns what it returned (see :meth:`KeyStore.open`)."""

STATE_FILE = "state.json"
_FILE_MODE = 0o600
_DIRECTORY_MODE = 0o700
_RSA_BITS = 2048
_MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers must accept 1024 bits and up

_Stamp = tuple[int, int, int, int]
"""(device, inode, size, mtime_ns): a key file still is the file that was loaded."""


class DKIMKeyError(Exception):
    """A DKIM key or state file cannot be used; the message starts with its path."""


@attrs.frozen
class _Loaded:
    """One generation's keys, ready to sign and to publish."""

    keys: DomainKeys
    published: tuple[PublishedKey, PublishedKey]
    stamps: tuple[_Stamp, _Stamp]


@attrs.frozen
class _Domain:
    generations: tuple[Generation, ...]
    loaded: Mapping[str, _Loaded]


class KeyStore:
    """The DKIM keys of every domain under one directory. Use :meth:`KeyStore.open`.

    Safe to share between threads: changes are made under a lock and published by
    replacing one mapping, so :meth:`signing_keys` never waits and never sees half a
    change.
    """

    def __init__(
        self, directory: Path, domains: Mapping[str, _Domain], guard: Guard | None = None
    ) -> None:
        self._directory = directory
        self._domains = domains
        self._lock = threading.Lock()
        self._guard = guard

    @classmethod
    def open(cls, directory: Path, guard: Guard | None = None) -> KeyStore:
        """Load every domain's keys under ``directory`` (``data_dir/"dkim"``), creating the
        directory if needed. ``DKIMKeyError`` naming the file if any of them is unusable:
        a server must not start signing with half its keys. ``guard(make)`` runs each
        creation of keys (several nodes sharing a database: under its lock, with the
        other nodes' keys copied first and the new ones stored after,
        :mod:`rail.shared.mirror`)."""
        _make_directory(directory)
        return cls(directory, _read_all(directory, {}), guard)

    def domains(self) -> list[str]:
        """The domains that have keys, sorted."""
        return sorted(self._domains)

    def ensure(self, domains: Iterable[str], now: float) -> list[str]:
        """Create the first generation for each of ``domains`` that has none (on disk:
        another process may have made it meanwhile, and then it is loaded instead).
        Returns the domains created, normalised (lower-case A-labels), in the order given.
        """
        wanted = list(dict.fromkeys(_normalised(name) for name in domains))
        if all(domain in self._domains for domain in wanted):
            return []
        if self._guard is not None:
            return self._guard(lambda: self._create(wanted, now))
        return self._create(wanted, now)

    def _create(self, wanted: list[str], now: float) -> list[str]:
        created: list[str] = []
        with self._lock:
            for domain in wanted:
                if domain in self._domains:
                    continue
                directory = self._directory / domain
                _make_directory(directory)
                with _locked(directory):
                    if not (directory / STATE_FILE).exists():
                        generation = Generation(name=new_name((), now), activated_at=now)
                        _write_generation(directory, (), generation)
                        created.append(domain)
                    state = _read_domain(directory, domain, None)
                self._domains = {**self._domains, domain: state}
        return created

    def rotate(self, domain: str, now: float) -> Generation:
        """Add a generation to ``domain``; it signs mail received from ``now`` on.

        Works from the state on disk, so a rotation by another process is never lost.
        ``activated_at`` never goes back before the previous generation's, so a clock that
        stepped backwards cannot reorder generations.
        """
        domain = _normalised(domain)
        directory = self._directory / domain
        with self._lock:
            _make_directory(directory)
            with _locked(directory):
                current = self._domains.get(domain)
                if (directory / STATE_FILE).exists():
                    current = _read_domain(directory, domain, current)
                generations = () if current is None else current.generations
                latest = max((g.activated_at for g in generations), default=now)
                generation = Generation(
                    name=new_name((g.name for g in generations), now),
                    activated_at=max(now, latest),
                )
                _write_generation(directory, generations, generation)
                state = _read_domain(directory, domain, current)
            self._domains = {**self._domains, domain: state}
        return generation

    def signing_keys(self, domain: str, received_at: float) -> DomainKeys | None:
        """The keys to sign a message received at ``received_at`` from ``domain``: those
        of the generation current then. ``None`` if the domain has no keys."""
        state = self._domains.get(domain)
        if state is None:
            normalised = a_label(domain)
            state = None if normalised is None else self._domains.get(normalised)
            if state is None:
                return None
        return state.loaded[signing_generation(state.generations, received_at).name].keys

    def activated_at(self, domain: str, now: float) -> float | None:
        """When the keys ``domain`` signs with at ``now`` began to sign (None: no keys)."""
        normalised = a_label(domain)
        state = None if normalised is None else self._domains.get(normalised)
        if state is None:
            return None
        return signing_generation(state.generations, now).activated_at

    def published(self, domain: str, oldest_pending: float | None) -> list[PublishedKey]:
        """The key records ``domain`` must publish, oldest generation first: the newest
        generation's and those of older generations that queued mail may still be signed
        with (``oldest_pending``: when the oldest message not yet delivered was received).
        """
        normalised = a_label(domain)
        state = None if normalised is None else self._domains.get(normalised)
        if state is None:
            return []
        return [
            record
            for generation in needed(state.generations, oldest_pending)
            for record in state.loaded[generation.name].published
        ]

    def reload(self) -> None:
        """Re-read every domain from disk (after SIGHUP, or a rotation by ``rail dkim``).

        Keys whose files did not change are kept as loaded. If anything is unusable,
        ``DKIMKeyError`` and the keys in use stay as they were.
        """
        with self._lock:
            self._domains = _read_all(self._directory, self._domains)


def _normalised(domain: str) -> str:
    name = a_label(domain)
    if name is None:
        raise ValueError(f"{domain!r} is not a domain name")
    return name


def _make_directory(path: Path) -> None:
    try:
        path.parent.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
        path.mkdir(mode=_DIRECTORY_MODE)
    except FileExistsError:
        return
    except OSError as e:
        raise DKIMKeyError(f"{path}: cannot create directory ({e.strerror})") from e
    os.chmod(path, _DIRECTORY_MODE)  # mkdir's mode is filtered by the umask


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise writers of one domain across processes (the PKI's lock, DKIM's error)."""
    try:
        lock = directory_lock(directory)
        lock.__enter__()
    except PKIError as e:
        raise DKIMKeyError(str(e)) from e
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def _write(path: Path, data: bytes) -> None:
    try:
        write_file_atomic(path, data, _FILE_MODE)
    except OSError as e:
        raise DKIMKeyError(f"{path}: cannot write ({e.strerror})") from e


def _write_generation(
    directory: Path, generations: tuple[Generation, ...], generation: Generation
) -> None:
    """New keys first, then the state that makes them current."""
    ed_key = ed25519.Ed25519PrivateKey.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    _write(directory / f"{generation.ed25519_selector}.key", _pem(ed_key))
    _write(directory / f"{generation.rsa_selector}.key", _pem(rsa_key))
    _write(directory / STATE_FILE, encode_state((*generations, generation)))


def _pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    """PKCS#8, unencrypted: the 0600 mode is the protection, and OpenSSL and every DKIM
    signer read it."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _read_all(directory: Path, previous: Mapping[str, _Domain]) -> dict[str, _Domain]:
    """Every domain directory that has a state file; others (a crash before the first
    state was written, foreign files) are not domains yet."""
    try:
        entries = sorted(directory.iterdir())
    except OSError as e:
        raise DKIMKeyError(f"{directory}: cannot list ({e.strerror})") from e
    domains = {}
    for entry in entries:
        if a_label(entry.name) == entry.name and (entry / STATE_FILE).is_file():
            domains[entry.name] = _read_domain(entry, entry.name, previous.get(entry.name))
    return domains


def _read_domain(directory: Path, domain: str, previous: _Domain | None) -> _Domain:
    path = directory / STATE_FILE
    try:
        generations = decode_state(_read(path))
    except ValueError as e:
        raise DKIMKeyError(f"{path}: invalid DKIM state: {e}") from None
    reusable = {} if previous is None else previous.loaded
    loaded = {}
    for generation in generations:
        before = reusable.get(generation.name)
        loaded[generation.name] = _load_generation(directory, domain, generation, before)
    return _Domain(generations=generations, loaded=loaded)


def _load_generation(
    directory: Path, domain: str, generation: Generation, before: _Loaded | None
) -> _Loaded:
    ed_path = directory / f"{generation.ed25519_selector}.key"
    rsa_path = directory / f"{generation.rsa_selector}.key"
    stamps = (_stamp(ed_path), _stamp(rsa_path))
    if before is not None and before.stamps == stamps:
        return before
    ed_key = _load_ed25519(ed_path)
    rsa_key = _load_rsa(rsa_path)
    keys = DomainKeys(
        domain=domain,
        ed25519_selector=generation.ed25519_selector,
        rsa_selector=generation.rsa_selector,
        ed25519_key=ed_key,
        rsa_key=rsa_key,
    )
    published = (
        PublishedKey(generation.ed25519_selector, "ed25519", txt_value(ed_key.public_key())),
        PublishedKey(generation.rsa_selector, "rsa", txt_value(rsa_key.public_key())),
    )
    return _Loaded(keys=keys, published=published, stamps=stamps)


def _stamp(path: Path) -> _Stamp:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DKIMKeyError(f"{path}: missing (its generation is listed in {STATE_FILE})") from None
    except OSError as e:
        raise DKIMKeyError(f"{path}: cannot read ({e.strerror})") from e
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DKIMKeyError(f"{path}: cannot read ({e.strerror})") from e


def _load_ed25519(path: Path) -> ed25519.Ed25519PrivateKey:
    key = _load_pem(path)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise DKIMKeyError(f"{path}: not an ed25519 private key")
    return key


def _load_rsa(path: Path) -> rsa.RSAPrivateKey:
    key = _load_pem(path)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DKIMKeyError(f"{path}: not an RSA private key")
    if key.key_size < _MIN_RSA_BITS:
        raise DKIMKeyError(f"{path}: RSA key of {key.key_size} bits is too short")
    if not _signs_and_verifies(key):
        raise DKIMKeyError(f"{path}: damaged RSA key (its parts do not belong together)")
    return key


def _signs_and_verifies(key: rsa.RSAPrivateKey) -> bool:
    """Whether a signature made with ``key`` verifies with its public key: what matters
    of the key check :func:`_load_pem` skips. A key whose halves do not belong together
    would sign mail the published record cannot verify. (Damaged CRT parts alone cannot
    leak the key: OpenSSL checks each CRT result and falls back to the private exponent.)"""
    probe = b"rail: DKIM key check"
    try:
        signature = key.sign(probe, padding.PKCS1v15(), hashes.SHA256())
        key.public_key().verify(signature, probe, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _load_pem(path: Path) -> PrivateKeyTypes:
    data = _read(path)
    try:
        # OpenSSL's full RSA key check (primality of p and q) holds the GIL for about
        # 30 ms per 2048-bit key: loading keys in a thread (a reload, a new domain's
        # first message) would pause the reactor as long. Rail made these keys itself;
        # _load_rsa checks them with a signature instead (under a millisecond).
        return serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise DKIMKeyError(f"{path}: not an unencrypted PEM private key") from None

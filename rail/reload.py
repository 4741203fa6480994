"""SIGHUP: re-read the configuration, TLS material and DKIM keys without dropping connections.

What can change in a running process changes: the server certificate and key (every TLS
listener builds new connections with the new context; open ones keep theirs), DKIM keys
(after ``rail dkim rotate``, or new local domains), the delivery retry schedule and
concurrency limits. Settings that would need ports re-bound or the queue moved
(``listen``, ``data_dir``, ``hostname``, resolvers, smarthost) are reported as needing a
restart and keep their running values. Creating DKIM keys for new domains runs in a
thread (``in_thread``), never on the reactor. A configuration that does not load changes nothing:
its problems are logged, as ``rail config-check`` would print them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.config import Config, ConfigError, load_config
from rail.delivery.decide import RetryPolicy
from rail.delivery.scheduler import Scheduler
from rail.dkim.keys import DKIMKeyError, KeyStore
from rail.pki.ca import CertificateAuthority
from rail.pki.files import PKIError, load_or_create_server_material, load_server_material
from rail.pki.tls import ServerMaterial, ServerTLS

__all__ = ["Reloader", "restart_needed"]

_log = Logger()

_RESTART_KEYS = (
    ("hostname", lambda c: c.hostname),
    ("data_dir", lambda c: c.data_dir),
    ("listen", lambda c: c.listen),
    ("delivery.hold", lambda c: c.delivery.hold),
    ("delivery.nameservers", lambda c: c.delivery.nameservers),
    ("delivery.port", lambda c: c.delivery.port),
    ("delivery.smarthost", lambda c: c.delivery.smarthost),
    ("delivery.prepare_timeout", lambda c: c.delivery.prepare_timeout),
    ("delivery.prepare_threads", lambda c: c.delivery.prepare_threads),
    ("limits", lambda c: c.limits),
    ("storage", lambda c: c.storage),
    ("web", lambda c: c.web),
    ("logging", lambda c: c.logging),
)


def restart_needed(old: Config, new: Config) -> list[str]:
    """The changed settings that only take effect after a restart."""
    return [name for name, read in _RESTART_KEYS if read(old) != read(new)]


@attrs.define
class Reloader:
    """Applies a re-read configuration to the running parts it was built with."""

    config_path: Path
    config: Config
    ca: CertificateAuthority
    tls: Sequence[ServerTLS]
    keys: KeyStore
    scheduler: Scheduler | None
    dkim_domains: Callable[[Config], list[str]]
    now: Callable[[], float]
    hooks: Sequence[Callable[[Config], object]] = ()
    """Called with the new configuration after the rest is applied: the inbound
    directory, the DNS zones and the webhook dispatcher follow it this way. A hook that
    raises is logged and does not stop the others."""
    in_thread: Callable[[Callable[[], list[str]]], Any] | None = None
    """``in_thread(f)`` runs ``f()`` off the reactor thread and returns a Deferred of its
    result. Given, the DKIM step (re-reading the keys, reading the registry for the local
    domains, creating the keys of new ones: RSA generation and fsyncs) runs there, and the
    hooks (the DNS zones publish the new keys) run once it is done. Without it (tests, the
    CLI), everything runs at once."""

    def reload(self) -> bool:
        """Re-read and apply everything; False (and nothing changed) if the configuration
        or the new TLS material is unusable. DKIM trouble is logged and does not stop the
        rest."""
        _log.info("SIGHUP: reloading {path}", path=str(self.config_path))
        try:
            config = load_config(self.config_path)
        except ConfigError as error:
            for problem in error.problems:
                _log.error("reload refused: {problem}", problem=str(problem))
            return False
        try:
            # With ACME the certificate is the ACME service's to replace, not SIGHUP's.
            if config.tls.mode != "acme":
                material = self._server_material(config)
                for tls in self.tls:
                    tls.replace(material)
        except (PKIError, OSError, ValueError) as error:
            _log.error("reload refused: TLS material: {error}", error=str(error))
            return False
        for name in restart_needed(self.config, config):
            _log.warn("{setting} changed: it takes effect after a restart", setting=name)
        if self.scheduler is not None:
            delivery = config.delivery
            self.scheduler.reconfigure(
                RetryPolicy(schedule=delivery.retry, max_age=delivery.max_age),
                concurrency=delivery.concurrency,
                per_destination=delivery.per_destination,
                messages_per_connection=delivery.messages_per_connection,
            )
        self.config = attrs.evolve(
            config,
            hostname=self.config.hostname,
            data_dir=self.config.data_dir,
            listen=self.config.listen,
        )
        applied = self.config
        if self.in_thread is None:
            try:
                self._dkim_logged(self._dkim(config))
            except (DKIMKeyError, OSError) as error:
                self._dkim_logged(Failure(error))
            self._run_hooks(applied)
        else:
            keys = self.in_thread(lambda: self._dkim(config))
            keys.addBoth(self._dkim_logged)
            keys.addCallback(lambda _: self._run_hooks(applied))
        return True

    def _dkim(self, config: Config) -> list[str]:
        """Re-read the keys and create those of new domains; the domains created."""
        self.keys.reload()
        return self.keys.ensure(self.dkim_domains(config), self.now())

    def _dkim_logged(self, outcome: list[str] | Failure) -> None:
        if isinstance(outcome, Failure):
            if outcome.check(DKIMKeyError, OSError):
                _log.error("DKIM keys not reloaded: {error}", error=outcome.getErrorMessage())
            else:
                _log.failure("reload: DKIM keys failed", outcome)
        elif outcome:
            _log.info("created DKIM keys for {domains}", domains=", ".join(outcome))

    def _run_hooks(self, config: Config) -> None:
        for hook in self.hooks:
            try:
                hook(config)
            except Exception:
                _log.failure("reload: {hook} failed", hook=getattr(hook, "__qualname__", hook))
        _log.info("reload done")

    def _server_material(self, config: Config) -> ServerMaterial:
        now = datetime.fromtimestamp(self.now(), UTC)
        if config.tls.mode == "self_signed":
            leaf, key = load_or_create_server_material(
                self.config.data_dir, self.ca, self.config.hostname, now
            )
            return ServerMaterial(chain=(leaf,), key=key)
        assert config.tls.cert_file is not None and config.tls.key_file is not None
        chain, key = load_server_material(config.tls.cert_file, config.tls.key_file)
        return ServerMaterial(chain=tuple(chain), key=key)

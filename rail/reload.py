"""SIGHUP: re-read the configuration, TLS material and DKIM keys without dropping connections.

What can change in a running process changes: the server certificate and key (every TLS
listener builds new connections with the new context; open ones keep theirs), DKIM keys
(after ``rail dkim rotate``, or new local domains), the delivery retry schedule and
concurrency limits. Settings that would need ports re-bound or the queue moved
(``listen``, ``data_dir``, ``hostname``, resolvers, smarthost, MTA-STS) are reported as needing a
restart and keep their running values. A configuration that does not load changes nothing:
its problems are logged, as ``rail config-check`` would print them.

Everything that reads files or works with keys runs in a thread (``in_thread``), never on
the reactor: parsing the configuration, loading (or renewing) the server certificate,
building the new TLS contexts, re-reading the DKIM keys, reading the registry for the local
domains and creating the keys of new ones (RSA generation, fsyncs). The reactor then
applies the result, which cannot fail halfway: contexts are swapped, limits set. Reloads
run one at a time; signals that arrive during one make one more reload after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
from OpenSSL import SSL
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.config import Config, ConfigError, load_config
from rail.delivery.decide import RetryPolicy
from rail.delivery.scheduler import Scheduler
from rail.dkim.keys import DKIMKeyError, KeyStore
from rail.pki.ca import CertificateAuthority
from rail.pki.files import PKIError, load_or_create_server_material, load_server_material
from rail.pki.tls import PreparedTLS, ServerMaterial, ServerTLS

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
    ("delivery.mta_sts", lambda c: c.delivery.mta_sts),
    ("delivery.prepare_timeout", lambda c: c.delivery.prepare_timeout),
    ("delivery.prepare_threads", lambda c: c.delivery.prepare_threads),
    ("delivery.dane", lambda c: (c.delivery.dane, c.delivery.dane_resolver)),
    ("tlsrpt", lambda c: c.tlsrpt),
    ("limits", lambda c: c.limits),
    ("storage", lambda c: c.storage),
    ("web", lambda c: c.web),
    ("logging", lambda c: c.logging),
    ("bounces", lambda c: c.bounces),
)


def restart_needed(old: Config, new: Config) -> list[str]:
    """The changed settings that only take effect after a restart."""
    return [name for name, read in _RESTART_KEYS if read(old) != read(new)]


@attrs.frozen
class _Refused:
    """A reload that changes nothing: the configuration's problems, or the TLS error."""

    problems: tuple[str, ...] = ()
    tls_error: str | None = None


@attrs.frozen
class _Prepared:
    """What the thread read and built, for the reactor to apply."""

    config: Config
    contexts: tuple[tuple[ServerTLS, PreparedTLS], ...]
    """Each listener's new context; none with ACME (its certificate is the ACME
    service's to replace, not SIGHUP's)."""
    dkim: list[str] | Failure
    """The domains whose DKIM keys were created, or why the keys were not reloaded."""


def _at_once(work: Callable[[], Any]) -> defer.Deferred[Any]:
    return defer.maybeDeferred(work)


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
    """Called on the reactor thread with the new configuration once the rest is applied:
    the inbound directory, the DNS zones and the webhook dispatcher follow it this way. A
    hook may return a Deferred (its own work in a thread): the reload is done when all
    have fired. A hook that fails is logged and does not stop the others."""
    in_thread: Callable[[Callable[[], Any]], defer.Deferred[Any]] | None = None
    """``in_thread(f)`` runs ``f()`` off the reactor thread and returns a Deferred of its
    result: every file and key step of a reload runs there (see the module docstring).
    Without it (tests, the CLI), they run at once on the calling thread."""
    _busy: bool = attrs.field(default=False, init=False)
    _waiting: list[defer.Deferred[bool]] = attrs.field(factory=list, init=False)

    def reload(self) -> defer.Deferred[bool]:
        """Re-read and apply everything. Fires with True once applied (the hooks' work
        included), or False (and nothing changed) if the configuration or the new TLS
        material is unusable. DKIM trouble is logged and does not stop the rest.

        A reload asked for while one runs starts after it (that one may have read the
        files before the change the caller knows of); those asked for meanwhile share it.
        """
        waiter: defer.Deferred[bool] = defer.Deferred()
        self._waiting.append(waiter)
        if not self._busy:
            self._start()
        return waiter

    def _start(self) -> None:
        waiters, self._waiting = self._waiting, []
        self._busy = True
        _log.info("SIGHUP: reloading {path}", path=str(self.config_path))
        run = self.in_thread if self.in_thread is not None else _at_once
        outcome: defer.Deferred[Any] = run(self._prepare)
        outcome.addBoth(self._apply_then_next)
        outcome.addBoth(self._tell, waiters)

    def _prepare(self) -> _Prepared | _Refused:
        """In the thread: everything that reads files or works with keys."""
        try:
            config = load_config(self.config_path)
        except ConfigError as error:
            return _Refused(problems=tuple(str(problem) for problem in error.problems))
        contexts: tuple[tuple[ServerTLS, PreparedTLS], ...] = ()
        try:
            if config.tls.mode != "acme":
                material = self._server_material(config)
                contexts = tuple((tls, tls.prepare(material)) for tls in self.tls)
        except (PKIError, OSError, ValueError, SSL.Error) as error:
            return _Refused(tls_error=str(error))
        dkim: list[str] | Failure
        try:
            dkim = self._dkim(config)
        except Exception:
            dkim = Failure()
        return _Prepared(config, contexts, dkim)

    def _apply_then_next(self, prepared: _Prepared | _Refused | Failure) -> Any:
        """On the reactor: apply, then start a reload asked for meanwhile."""
        try:
            if isinstance(prepared, Failure):
                _log.failure("reload failed; nothing changed", prepared)
                return False
            return self._apply(prepared)
        except Exception:
            _log.failure("reload failed while applying")
            return False
        finally:
            self._busy = False
            if self._waiting:
                self._start()

    def _apply(self, prepared: _Prepared | _Refused) -> defer.Deferred[bool] | bool:
        if isinstance(prepared, _Refused):
            for problem in prepared.problems:
                _log.error("reload refused: {problem}", problem=problem)
            if prepared.tls_error is not None:
                _log.error("reload refused: TLS material: {error}", error=prepared.tls_error)
            return False
        config = prepared.config
        for tls, context in prepared.contexts:
            tls.install(context)
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
        self._dkim_logged(prepared.dkim)
        return self._run_hooks(self.config)

    def _tell(self, result: bool | Failure, waiters: list[defer.Deferred[bool]]) -> None:
        if isinstance(result, Failure):
            _log.failure("reload failed", result)
            result = False
        for waiter in waiters:
            waiter.callback(result)

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

    def _run_hooks(self, config: Config) -> defer.Deferred[bool]:
        pending: list[defer.Deferred[Any]] = []
        for hook in self.hooks:
            name = getattr(hook, "__qualname__", hook)
            try:
                result = hook(config)
            except Exception:
                _log.failure("reload: {hook} failed", hook=name)
                continue
            if isinstance(result, defer.Deferred):
                pending.append(result.addErrback(self._hook_failed, name))
        done = defer.DeferredList(pending)

        def finished(_: object) -> bool:
            _log.info("reload done")
            return True

        return done.addCallback(finished)

    def _hook_failed(self, failure: Failure, name: object) -> None:
        _log.failure("reload: {hook} failed", failure, hook=name)

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

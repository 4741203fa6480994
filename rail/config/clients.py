"""Per-client settings: the readers of ``clients`` and ``clients_default``, and the
settings in force for one client.

``clients_default`` applies to every client; ``clients.NAME`` overrides it key by key, so
an operator can tighten one limit of one client without restating the others. A key set
to null under ``clients.NAME.limits`` lifts that limit for the client.
"""

from __future__ import annotations

import attrs

from rail.config import readers as r
from rail.config.schema import Client, ClientLimits, Config

__all__ = ["CLIENTS_DEFAULT", "ClientPolicies", "read_clients"]

_LIMIT_KEYS = tuple(attrs.fields_dict(ClientLimits))
_LIMIT = r.optional(r.integer(0, 1_000_000_000))


def _limits(value: object, at: r.Cursor) -> tuple[tuple[str, int | None], ...]:
    """A mapping of ``ClientLimits`` keys to counts (or null), in document order."""
    if not isinstance(value, dict):
        raise r.InvalidError(f"expected a mapping, got {r.kind(value)}")
    pairs: list[tuple[str, int | None]] = []
    valid = True
    for key, item in value.items():
        if not isinstance(key, str) or key not in _LIMIT_KEYS:
            at.key(str(key)).report(
                "unknown key" + (r.suggestion(key, _LIMIT_KEYS) if isinstance(key, str) else "")
            )
            valid = False
            continue
        ok, count = r.read_value(_LIMIT, item, at.key(key))
        valid = valid and ok
        pairs.append((key, count))
    if not valid:
        raise r.ReportedError()
    return tuple(pairs)


_CLIENT = r.section(Client, {"limits": _limits, "sandbox": r.optional(r.boolean)})
CLIENTS_DEFAULT = _CLIENT
"""Reader of ``clients_default``."""


def read_clients(value: object, at: r.Cursor) -> tuple[tuple[str, Client], ...]:
    """Reader of ``clients``: client name to its settings, each problem at its path."""
    if not isinstance(value, dict):
        raise r.InvalidError(f"expected a mapping of client names, got {r.kind(value)}")
    clients: list[tuple[str, Client]] = []
    valid = True
    for name, item in value.items():
        where = at.key(str(name))
        ok, client = r.read_value(r.client_name, name, where)
        if ok:
            ok, client = r.read_value(_CLIENT, item, where)
        valid = valid and ok
        if ok:
            clients.append((str(name), client))
    if not valid:
        raise r.ReportedError()
    return tuple(clients)


@attrs.frozen
class ClientPolicies:
    """The settings in force for every client, looked up in constant time (they are read
    on every MAIL FROM, API request and delivery claim). Built once per configuration."""

    default_limits: ClientLimits
    default_sandbox: bool
    own_limits: dict[str, ClientLimits]
    own_sandbox: dict[str, bool]

    @classmethod
    def from_config(cls, config: Config) -> ClientPolicies:
        default = dict(config.clients_default.limits)
        default_sandbox = bool(config.clients_default.sandbox)
        own_limits = {}
        own_sandbox = {}
        for name, client in config.clients:
            own_limits[name] = ClientLimits(**{**default, **dict(client.limits)})
            if client.sandbox is not None:
                own_sandbox[name] = client.sandbox
        return cls(ClientLimits(**default), default_sandbox, own_limits, own_sandbox)

    def limits(self, name: str) -> ClientLimits:
        """The limits of client ``name``: the default's, then its own keys."""
        return self.own_limits.get(name, self.default_limits)

    def sandbox(self, name: str) -> bool:
        """Whether client ``name``'s mail is accepted but never delivered."""
        return self.own_sandbox.get(name, self.default_sandbox)

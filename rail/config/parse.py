"""Strict, fail-closed reading of a configuration document into a :class:`Config`.

A typo in a mail relay's configuration must stop it from starting, not leave it running with
a default the operator did not choose: so an unknown key, a value of the wrong type or an
invalid value is an error. Every problem is collected, with its path, before
:class:`ConfigError` is raised, so one ``rail config-check`` shows them all.

Each section below is a table of readers (``readers.py``), one per key; the keys are the
attribute names of the schema class. Adding a setting is adding its attribute to
``schema.py`` and one line here; :func:`~rail.config.readers.section` refuses a table that
does not match its class.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from rail.config import readers as r
from rail.config.bouncedomain import template_problem
from rail.config.clients import CLIENTS_DEFAULT, read_clients
from rail.config.errors import ConfigError, Problem
from rail.config.schema import (
    ACME,
    DNS,
    MTASTS,
    PKI,
    TLS,
    TLSRPT,
    Bounces,
    ClusterNode,
    Config,
    Connections,
    ConnectionsPerIP,
    Delivery,
    Inbound,
    InboundRoute,
    KeyType,
    Limits,
    Listen,
    Logging,
    RateLimit,
    Retention,
    Shutdown,
    Smarthost,
    SmarthostAuth,
    Storage,
    Web,
    Webhooks,
)
from rail.config.workers import sqlite_refusal

__all__ = ["parse_config"]


def parse_config(data: object, base_dir: Path) -> Config:
    """Check ``data`` (as ``yaml.safe_load`` returns it) and build the :class:`Config`.

    Relative paths in ``data`` are taken relative to ``base_dir``, the directory of the
    configuration file. Raises :class:`ConfigError` listing every problem, in document order.
    """
    problems: list[Problem] = []
    ok, config = r.read_value(
        _CONFIG, data, r.Cursor(path="", base_dir=base_dir, problems=problems)
    )
    if problems or not ok:
        raise ConfigError(problems)
    assert isinstance(config, Config)
    return config


_TLS_CHOICE = (
    "set either self_signed: true (Rail issues its own certificate, for development),"
    " both cert_file and key_file, or acme"
)


def _tls_problem(values: Mapping[str, Any]) -> str | None:
    """The server certificate must come from exactly one place; otherwise ask which."""
    files = [key for key in ("cert_file", "key_file") if values.get(key) is not None]
    if values.get("acme") is not None:
        others = [*files, *(["self_signed"] if values.get("self_signed") else [])]
        if others:
            return f"acme excludes {' and '.join(others)}: {_TLS_CHOICE}"
        return None
    if values.get("self_signed") and files:
        return f"self_signed: true excludes {' and '.join(files)}: {_TLS_CHOICE}"
    if len(files) == 1:
        other = "key_file" if files == ["cert_file"] else "cert_file"
        return f"{files[0]} is set without {other}: {_TLS_CHOICE}"
    if not values.get("self_signed") and not files:
        return f"no server certificate is configured: {_TLS_CHOICE}"
    return None


_LISTEN = r.section(
    Listen,
    {
        "https": r.listener,
        "submission": r.listener,
        "inbound": r.listener,
        "http": r.listener,
        "dns": r.listener,
    },
)

_ACME = r.section(
    ACME,
    {
        "directory": r.uri(("https",)),
        "email": r.optional(r.email),
        "ca_file": r.optional(r.path),
        # dns-01 through Rail's own authority is not built yet: refuse it at load time
        # rather than at the first order.
        "challenge": r.choice(("http-01",)),
        "renew_before": r.duration("1d", "60d"),
    },
    required={"directory": "required: the ACME CA's directory URL"},
)

_TLS = r.section(
    TLS,
    {
        "self_signed": r.boolean,
        "cert_file": r.optional(r.path),
        "key_file": r.optional(r.path),
        "acme": r.optional(_ACME),
    },
    check=_tls_problem,
)

_PKI = r.section(
    PKI,
    {
        "key_type": r.choice(get_args(KeyType)),
        "client_validity": r.duration("1d", "3650d"),
    },
)

_WEBHOOKS = r.section(
    Webhooks,
    {
        "allow_http_loopback": r.boolean,
        "allow_private": r.boolean,
        "timeout": r.duration("1s", "10m"),
        "retry": r.non_empty(r.list_of(r.duration("1s", "7d"), "durations")),
        "max_age": r.duration("1m", "60d"),
        "concurrency": r.integer(1, 1000),
        "ca_file": r.optional(r.path),
    },
)


def _route_problem(values: Mapping[str, Any]) -> str | None:
    """A route must take its mail somewhere: to a client, to forward addresses, or both;
    a rate limit applies to forwarding only."""
    forward = values.get("forward", ())
    if values.get("client") is None and not forward:
        return "client or forward is required: where this route's mail goes"
    limited = [k for k in ("forward_per_minute", "forward_per_hour") if values.get(k) is not None]
    if limited and not forward:
        return f"{' and '.join(limited)} without forward: nothing to limit"
    return None


_ROUTE = r.section(
    InboundRoute,
    {
        "match": r.route_match,
        "client": r.optional(r.client_name),
        "forward": r.unique(r.list_of(r.email, "addresses")),
        "forward_per_minute": r.optional(r.integer(1, 1_000_000)),
        "forward_per_hour": r.optional(r.integer(1, 1_000_000)),
    },
    required={"match": "required: the addresses this route takes"},
    check=_route_problem,
)

_INBOUND = r.section(
    Inbound,
    {
        "nameservers": r.optional(r.non_empty(r.list_of(r.nameserver, "addresses"))),
        "require_tls": r.boolean,
        "spf_fail": r.choice(("reject", "tag")),
        "dmarc": r.choice(("enforce", "tag")),
        "routes": r.list_of(_ROUTE, "routes"),
        "postmaster": r.optional(r.client_name),
        "max_connections_per_ip": r.integer(1, 10_000),
    },
)

_RATE_LIMIT = r.section(
    RateLimit,
    {
        "responses_per_second": r.integer(0, 1_000_000),
        "slip": r.integer(0, 10),
        "ipv4_prefix": r.integer(8, 32),
        "ipv6_prefix": r.integer(16, 128),
    },
)

_NODES = r.list_of(
    r.section(
        ClusterNode,
        {
            "hostname": r.domain_name("host name"),
            "ipv4": r.unique(r.list_of(r.ip_address(4), "IPv4 addresses")),
            "ipv6": r.unique(r.list_of(r.ip_address(6), "IPv6 addresses")),
        },
        required={"hostname": "required"},
    ),
    "nodes",
)


def _dns_problem(values: Mapping[str, Any]) -> str | None:
    """Each node is named once, and its addresses are in one place."""
    nodes = values.get("nodes", ())
    names = [node.hostname for node in nodes]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        return f"nodes: {', '.join(twice)} listed more than once"
    if nodes and (values.get("ipv4") or values.get("ipv6")):
        return "ipv4, ipv6: with nodes, give this node's addresses in its nodes entry instead"
    return None


_DNS = r.section(
    DNS,
    {
        "ipv4": r.unique(r.list_of(r.ip_address(4), "IPv4 addresses")),
        "ipv6": r.unique(r.list_of(r.ip_address(6), "IPv6 addresses")),
        "nameservers": r.unique(r.list_of(r.domain_name("host name"), "host names")),
        "ttl": r.duration("1m", "7d"),
        "spf_include": r.list_of(r.spf_term, "SPF terms"),
        "dmarc_policy": r.choice(("none", "quarantine", "reject")),
        "dmarc_rua": r.optional(r.uri(("mailto",))),
        "mta_sts_mode": r.choice(("enforce", "testing", "none")),
        "mta_sts_max_age": r.duration("1d", "365d"),
        "tls_rpt": r.optional(r.uri(("mailto", "https"))),
        "caa": r.unique(r.list_of(r.domain_name("CA domain"), "CA domains")),
        "rate_limit": _RATE_LIMIT,
        "nodes": _NODES,
    },
    check=_dns_problem,
)


def _config_problem(values: Mapping[str, Any]) -> str | None:
    """The nodes of a cluster include this one and share a database."""
    nodes = values.get("dns", DNS()).nodes
    if not nodes:
        return None
    hostname = values.get("hostname")
    if hostname not in {node.hostname for node in nodes}:
        return f"dns.nodes: must list this node's hostname {hostname!r}"
    if len(nodes) > 1 and values.get("storage", Storage()).backend != "postgresql":
        return "dns.nodes: several nodes share one database: storage.backend must be postgresql"
    return None


_PER_IP = r.section(
    ConnectionsPerIP,
    {
        "https": r.integer(1, 1_000_000),
        "submission": r.integer(1, 1_000_000),
        "http": r.integer(1, 1_000_000),
        "dns": r.integer(1, 1_000_000),
    },
)

_CONNECTIONS = r.section(
    Connections,
    {
        "reserve": r.optional(r.integer(0, 10_000_000)),
        "max_per_listener": r.optional(r.integer(16, 10_000_000)),
        "per_ip": _PER_IP,
        "ipv6_prefix": r.integer(32, 128),
        "evict_idle": r.optional(r.duration("0s", "1h")),
        "tls_handshake_timeout": r.duration("1s", "10m"),
    },
)


def _limits_problem(values: Mapping[str, Any]) -> str | None:
    """A message as large as ``message_size`` must fit the SMTP message memory (charged
    4 times its size, :data:`rail.smtp.budget.COPIES`), or it could never be accepted."""
    defaults = Limits()
    size = values.get("message_size", defaults.message_size)
    memory = values.get("data_memory", defaults.data_memory)
    if memory < 4 * size:
        return (
            f"data_memory ({memory} bytes) must be at least 4 x message_size ({size} bytes):"
            " a message is charged 4 times its size"
        )
    return None


_LIMITS = r.section(
    Limits,
    {
        "http_body_size": r.size("1KB", "100MB"),
        "http_idle_timeout": r.duration("1s", "1h"),
        "message_size": r.size("1KB", "1GB"),
        "max_recipients": r.integer(1, 10_000),
        "smtp_idle_timeout": r.duration("10s", "1h"),
        "smtp_transaction_timeout": r.duration("10s", "1h"),
        "smtp_bad_commands": r.integer(1, 1000),
        "http_header_timeout": r.duration("1s", "10m"),
        "http_body_grace": r.duration("0s", "10m"),
        "http_min_body_rate": r.size("1B", "1GB"),
        "connections": _CONNECTIONS,
        "header_size": r.size("1KB", "64MB"),
        "header_fields": r.integer(10, 100_000),
        "smtp_command_timeout": r.duration("1s", "1h"),
        "smtp_idle_commands": r.integer(1, 100_000),
        "data_memory": r.size("1MB", "64GB"),
    },
    check=_limits_problem,
)


def _retention_problem(values: Mapping[str, Any]) -> str | None:
    """A message's record cannot go before its body."""
    body = values.get("body", Retention().body)
    record = values.get("record", Retention().record)
    if record < body:
        return "record must be at least body: the status outlives the message, not the reverse"
    return None


_RETENTION = r.section(
    Retention,
    {"body": r.duration("1h", "3650d"), "record": r.duration("1h", "3650d")},
    check=_retention_problem,
)


def _dsn(value: object, at: r.Cursor) -> str:
    """A libpq connection string, parsed as libpq would (key=value pairs or a URI)."""
    from psycopg.conninfo import conninfo_to_dict  # only configs that name one need it

    text = r.text(1, 4096)(value, at)
    try:
        conninfo_to_dict(text)
    except Exception as error:  # psycopg.ProgrammingError: libpq's own message
        raise r.InvalidError(f"not a libpq connection string: {error}") from None
    return text


def _storage_problem(values: Mapping[str, Any]) -> str | None:
    """A DSN belongs to the PostgreSQL backend, which cannot do without one."""
    backend = values.get("backend", Storage().backend)
    if backend == "postgresql" and values.get("dsn") is None:
        return "dsn is required with backend: postgresql"
    if backend == "sqlite" and values.get("dsn") is not None:
        return "dsn is only used with backend: postgresql"
    if backend == "sqlite" and values.get("lease") is not None:
        return "lease is only used with backend: postgresql (SQLite's claims take no leases)"
    return None


_STORAGE = r.section(
    Storage,
    {
        "max_queued": r.integer(1, 1_000_000_000),
        "min_free_space": r.size("0B", "1024GB"),
        "reserve": r.size("0B", "1GB"),
        "retention": _RETENTION,
        "backend": r.choice(("sqlite", "postgresql")),
        "dsn": r.optional(_dsn),
        "lease": r.duration("15s", "1h"),
    },
    check=_storage_problem,
)

_SHUTDOWN = r.section(
    Shutdown, {"drain_delay": r.duration("0s", "10m"), "grace_period": r.duration("0s", "10m")}
)

_WEB = r.section(Web, {"public_stats": r.choice(("admin", "loopback", "public"))})
_LOGGING = r.section(Logging, {"format": r.choice(("text", "json"))})

_SMARTHOST_AUTH = r.section(
    SmarthostAuth,
    {"username": r.auth_username, "password_file": r.path},
    required={
        "username": "required: the relay account's user name",
        "password_file": "required: the file holding the relay account's password",
    },
)


def _smarthost_problem(values: Mapping[str, Any]) -> str | None:
    """Credentials only ever go inside TLS that Rail verified."""
    if values.get("auth") is not None and values.get("tls", "required") == "opportunistic":
        return "auth needs tls: required or implicit (credentials never go in clear)"
    return None


_SMARTHOST = r.section(
    Smarthost,
    {
        "host": r.host,
        "port": r.integer(1, 65535),
        "tls": r.choice(("required", "implicit", "opportunistic")),
        "ca_file": r.optional(r.path),
        "auth": r.optional(_SMARTHOST_AUTH),
    },
    required={"host": "required: the relay's host name or IP address"},
    check=_smarthost_problem,
)

_MTA_STS = r.section(
    MTASTS,
    {
        "enabled": r.boolean,
        "ca_file": r.optional(r.path),
        "port": r.integer(1, 65535),
        "allow_private": r.boolean,
    },
)


def _delivery_problem(values: Mapping[str, Any]) -> str | None:
    """DANE needs a validating resolver on loopback: its AD bit is all Rail checks."""
    resolver = values.get("dane_resolver")
    if values.get("dane") and resolver is None:
        return "dane: true needs dane_resolver (a DNSSEC-validating resolver on loopback)"
    if resolver is not None and not ipaddress.ip_address(resolver[0]).is_loopback:
        return (
            f"dane_resolver: {resolver[0]} is not a loopback address: the AD bit of a"
            " resolver elsewhere is not protected on the way (run unbound on this host)"
        )
    return None


_DELIVERY = r.section(
    Delivery,
    {
        "hold": r.boolean,
        "nameservers": r.optional(r.non_empty(r.list_of(r.nameserver, "addresses"))),
        "port": r.integer(1, 65535),
        "smarthost": r.optional(_SMARTHOST),
        "mta_sts": _MTA_STS,
        "dane": r.boolean,
        "dane_resolver": r.optional(r.nameserver),
        "retry": r.non_empty(r.list_of(r.duration("1s", "7d"), "durations")),
        "max_age": r.duration("1m", "60d"),
        "concurrency": r.integer(1, 10_000),
        "per_destination": r.integer(1, 1000),
        "messages_per_connection": r.integer(1, 100_000),
        "connect_timeout": r.duration("1s", "10m"),
        "prepare_timeout": r.duration("1s", "1h"),
        "prepare_threads": r.integer(1, 64),
    },
    check=_delivery_problem,
)

_TLSRPT = r.section(
    TLSRPT,
    {
        "enabled": r.boolean,
        "organization": r.optional(r.text(1, 200)),
        "contact": r.optional(r.text(1, 200)),
        "sender": r.optional(r.email),
        "allow_private": r.boolean,
    },
)


def _bounce_template(value: object, at: r.Cursor) -> str:
    if not isinstance(value, str):
        raise r.InvalidError(f"expected a string like bounces.{{domain}}, got {r.kind(value)}")
    problem = template_problem(value.lower())
    if problem is not None:
        raise r.InvalidError(f"{value!r} {problem}")
    return value.lower()


_BOUNCES = r.section(
    Bounces,
    {
        "enabled": r.boolean,
        "domain": _bounce_template,
        "max_report_size": r.size("1KB", "4MB"),
    },
)


def _config_problems(values: Mapping[str, Any]) -> str | tuple[str, str] | None:
    """The problems of the whole configuration: the cluster's, then the workers'."""
    return _config_problem(values) or _workers_problem(values)


def _workers_problem(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """A number of workers the store cannot serve (``auto`` is counted at start)."""
    workers = values.get("workers", 1)
    storage = values.get("storage", Storage())
    if not isinstance(workers, int):
        return None
    refusal = sqlite_refusal(workers, storage.backend)
    return ("workers", refusal) if refusal is not None else None


def _workers(value: object, at: r.Cursor) -> int | str:
    """A number of worker processes, or ``auto``."""
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        raise r.InvalidError(f"expected a number from 1 to 256 or 'auto', got {value!r}")
    number: int = r.integer(1, 256)(value, at)
    return number


_CONFIG = r.section(
    Config,
    {
        "hostname": r.domain_name("host name"),
        "data_dir": r.path,
        "local_domains": r.unique(r.list_of(r.domain_name("domain name"), "strings")),
        "listen": _LISTEN,
        "tls": _TLS,
        "pki": _PKI,
        "webhooks": _WEBHOOKS,
        "limits": _LIMITS,
        "storage": _STORAGE,
        "delivery": _DELIVERY,
        "inbound": _INBOUND,
        "dns": _DNS,
        "tlsrpt": _TLSRPT,
        "shutdown": _SHUTDOWN,
        "web": _WEB,
        "logging": _LOGGING,
        "clients_default": CLIENTS_DEFAULT,
        "clients": read_clients,
        "bounces": _BOUNCES,
        "workers": _workers,
        "worker_sockets": r.choice(("reuseport", "shared")),
    },
    required={"hostname": "required", "tls": f"no server certificate is configured: {_TLS_CHOICE}"},
    check=_config_problems,
)

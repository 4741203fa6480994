"""The shape of Rail's configuration, with its defaults.

These classes hold values that :func:`rail.config.parse.parse_config` has already checked:
validation lives there, not in attrs validators, so that every problem can be reported with
its path and all of them at once. Code and tests may build these classes directly; each class
is keyword-only so that adding a field never shifts the meaning of existing calls.

The defaults here are the documented defaults (``docs/configuration.md``): keep them in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs

from rail.config.listen import ListenSpec

__all__ = [
    "ACME",
    "DNS",
    "MTASTS",
    "PKI",
    "TLS",
    "TLSRPT",
    "Bounces",
    "Client",
    "ClientLimits",
    "Config",
    "Connections",
    "ConnectionsPerIP",
    "Delivery",
    "Inbound",
    "InboundRoute",
    "KeyType",
    "Limits",
    "Listen",
    "Logging",
    "RateLimit",
    "Retention",
    "Shutdown",
    "Smarthost",
    "SmarthostAuth",
    "Storage",
    "Web",
    "Webhooks",
]

KeyType = Literal["ed25519", "ecdsa-p256", "rsa2048"]

_DAY = 24 * 3600.0
_DEFAULT_HTTPS = ListenSpec(kind="tcp", port=443, interface="127.0.0.1")
_DEFAULT_SUBMISSION = ListenSpec(kind="tcp", port=465, interface="127.0.0.1")
_DEFAULT_INBOUND = ListenSpec(kind="tcp", port=25, interface="127.0.0.1")
_DEFAULT_HTTP = ListenSpec(kind="tcp", port=80, interface="127.0.0.1")
_DEFAULT_DNS = ListenSpec(kind="tcp", port=53, interface="127.0.0.1")
_MB = 1024 * 1024


@attrs.frozen(kw_only=True)
class Listen:
    """The network listeners; ``None`` disables one."""

    https: ListenSpec | None = _DEFAULT_HTTPS
    """The HTTPS API, certificate inspection, health and stats. Loopback unless the operator
    opens it, so that a fresh install exposes nothing by accident."""
    submission: ListenSpec | None = _DEFAULT_SUBMISSION
    """SMTPS (implicit TLS) for applications, client certificate required."""
    inbound: ListenSpec | None = _DEFAULT_INBOUND
    """SMTP with STARTTLS for mail from the internet to local domains (port 25)."""
    http: ListenSpec | None = _DEFAULT_HTTP
    """Plain HTTP: ACME HTTP-01 challenges; every other path redirects to https."""
    dns: ListenSpec | None = _DEFAULT_DNS
    """Authoritative DNS for the local domains, on UDP and TCP at the same address and port."""


@attrs.frozen(kw_only=True)
class ACME:
    """Obtaining and renewing the server certificate from an ACME CA (RFC 8555)."""

    directory: str
    """The CA's directory URL (https), e.g. Let's Encrypt's
    ``https://acme-v02.api.letsencrypt.org/directory``; tests use pebble on loopback."""
    email: str | None = None
    """Contact address registered with the account, for the CA's expiry warnings."""
    ca_file: Path | None = None
    """PEM bundle that verifies the ACME server's own HTTPS certificate, when it is not in
    the system trust store (pebble's test CA)."""
    challenge: Literal["http-01"] = "http-01"
    """How domain control is proven: ``http-01`` on the port-80 listener (the only
    challenge supported so far)."""
    renew_before: float = 30 * _DAY
    """Renew once the certificate expires within this long (checked daily)."""


@attrs.frozen(kw_only=True)
class TLS:
    """Where the server certificate comes from: exactly one of the three modes is set."""

    self_signed: bool = False
    """Rail issues its server certificate from its own CA under ``data_dir``: for development
    and tests, where no public certificate can be obtained."""
    cert_file: Path | None = None
    """PEM server certificate, optionally followed by its chain (leaf first)."""
    key_file: Path | None = None
    """PEM private key of ``cert_file``."""
    acme: ACME | None = None
    """Obtain the certificate by ACME; until the first one is issued Rail serves a
    certificate from its own CA."""

    @property
    def mode(self) -> Literal["self_signed", "files", "acme"]:
        """``"self_signed"``, ``"files"`` (certificate and key read from ``cert_file`` and
        ``key_file``) or ``"acme"``."""
        if self.acme is not None:
            return "acme"
        return "self_signed" if self.self_signed else "files"


@attrs.frozen(kw_only=True)
class PKI:
    """Rail's own CA, which issues the client certificates applications authenticate with."""

    key_type: KeyType = "ed25519"
    """Key type of client certificates made by ``rail certs issue`` without ``--key-type``:
    ed25519 is small and fast; the others exist for clients whose TLS stack lacks it."""
    client_validity: float = 365 * _DAY
    """Seconds a new client certificate is valid. Bounded (1 to 3650 days) so that a typo
    cannot issue a certificate that expires at once or never."""


@attrs.frozen(kw_only=True)
class Webhooks:
    """Delivery of inbound mail to applications' webhook URLs."""

    allow_http_loopback: bool = False
    """Accept ``http://`` webhooks whose host is a loopback address or ``localhost``, so an
    application under development can receive mail without a certificate. Anything that
    leaves the host must use https."""
    allow_private: bool = False
    """Allow webhook hosts that resolve to loopback, private, link-local or other internal
    addresses. Off in production, so a certificate's webhook URL cannot make Rail reach
    into the operator's network (SSRF); the development configuration turns it on."""
    timeout: float = 30.0
    """Seconds a webhook POST may take, connection included, before it counts as failed
    and is retried."""
    retry: tuple[float, ...] = (
        30.0,
        60.0,
        120.0,
        300.0,
        600.0,
        1200.0,
        2400.0,
        3600.0,
        7200.0,
        14400.0,
    )
    """Delay before each retry of a failed POST, the last one repeating, each with ±10%
    jitter; a ``Retry-After`` from the application replaces the delay (capped by it)."""
    max_age: float = 3 * _DAY
    """A message whose webhook has not answered 2xx this long after receipt fails: a DSN
    goes to its sender (unless null, or its SPF or DMARC failed)."""
    concurrency: int = 4
    """POSTs in flight at once to one webhook URL, so a burst of mail cannot overwhelm an
    application."""
    ca_file: Path | None = None
    """Extra PEM CA certificates trusted for https webhooks, besides the system store."""


@attrs.frozen(kw_only=True)
class InboundRoute:
    """Mail to addresses matching ``match`` goes to the application ``client``, is
    forwarded to the ``forward`` addresses, or both."""

    match: str
    """``*@domain`` (every address of a domain), ``local@domain`` (one address), or
    ``regex:PATTERN`` (a Python regular expression matched against the whole address,
    lower-cased domain)."""
    client: str | None = None
    """The client name (certificate CN) whose webhook receives the mail; may be left out
    when ``forward`` is set (at least one of the two is)."""
    forward: tuple[str, ...] = ()
    """Addresses outside Rail's local domains the mail is re-sent to, through the
    outbound queue, with SRS and an ARC seal (docs/forwarding.md)."""
    forward_per_minute: int | None = None
    """At most this many messages forwarded by this route per minute (null: no limit);
    past it, RCPT is answered ``451 4.7.0``, so a flood cannot spoil Rail's reputation."""
    forward_per_hour: int | None = None
    """At most this many messages forwarded by this route per hour (null: no limit)."""


@attrs.frozen(kw_only=True)
class Inbound:
    """Mail from the internet on port 25."""

    nameservers: tuple[tuple[str, int], ...] | None = None
    """Resolvers for SPF, DKIM and DMARC look-ups, as in ``delivery.nameservers``; null uses
    ``/etc/resolv.conf``."""
    require_tls: bool = False
    """Refuse MAIL before STARTTLS (``530 5.7.0``). RFC 3207 forbids this on a public MX,
    whose peers may not have TLS: for private relays only."""
    spf_fail: Literal["reject", "tag"] = "reject"
    """SPF ``fail``: ``reject`` with ``550 5.7.23`` or only ``tag`` it in
    Authentication-Results."""
    dmarc: Literal["enforce", "tag"] = "enforce"
    """``enforce`` the sender domain's DMARC policy (``p=reject`` refused with ``550 5.7.1``,
    ``p=quarantine`` tagged) or only ``tag`` the result."""
    routes: tuple[InboundRoute, ...] = ()
    """Where mail to addresses that are not a certificate's sender address goes, tried in
    order after exact certificate addresses."""
    postmaster: str | None = None
    """The client that receives ``postmaster@`` every local domain (RFC 5321 §4.5.1);
    without it, postmaster mail follows the routes."""
    max_connections_per_ip: int = 20
    """Connections one client IP address may hold open at once on port 25 (IPv6: one
    network of ``limits.connections.ipv6_prefix`` bits); the listener's gate applies it."""


@attrs.frozen(kw_only=True)
class RateLimit:
    """DNS response rate limiting: answers per second per client network and response
    (as in BIND's RRL), against reflection attacks that spoof a victim's address."""

    responses_per_second: int = 20
    """Answers per second to one network for one response (query name, type and class;
    for NXDOMAIN the zone; for errors none) before Rail starts dropping; 0 disables."""
    slip: int = 2
    """Of the answers over the limit, every ``slip``-th is sent truncated (TC=1) so a real
    client retries over TCP; 0 drops them all."""
    ipv4_prefix: int = 24
    """IPv4 addresses in one network of this length share a budget."""
    ipv6_prefix: int = 56
    """IPv6 addresses in one network of this length share a budget."""


@attrs.frozen(kw_only=True)
class ClusterNode:
    """One Rail node of a cluster sharing one PostgreSQL database, as the zone publishes it."""

    hostname: str
    """The node's DNS name (an MX target, and its A/AAAA records)."""
    ipv4: tuple[str, ...] = ()
    """The node's public IPv4 addresses (A records, SPF ``ip4:``)."""
    ipv6: tuple[str, ...] = ()
    """The node's public IPv6 addresses (AAAA records, SPF ``ip6:``)."""


@attrs.frozen(kw_only=True)
class DNS:
    """The zone Rail publishes for each local domain."""

    ipv4: tuple[str, ...] = ()
    """Public IPv4 addresses of ``hostname`` (its A records, and SPF ``ip4:``)."""
    ipv6: tuple[str, ...] = ()
    """Public IPv6 addresses of ``hostname`` (its AAAA records, and SPF ``ip6:``)."""
    nameservers: tuple[str, ...] = ()
    """Names of the zone's NS records; empty means ``hostname`` alone."""
    ttl: float = 3600.0
    """TTL of every record Rail serves, and the SOA minimum (negative caching)."""
    spf_include: tuple[str, ...] = ()
    """Extra SPF mechanisms after ``mx`` and the addresses, e.g. ``include:_spf.provider``."""
    dmarc_policy: Literal["none", "quarantine", "reject"] = "reject"
    """``p=`` of the published DMARC record."""
    dmarc_rua: str | None = None
    """``mailto:`` URI for DMARC aggregate reports, if wanted."""
    mta_sts_mode: Literal["enforce", "testing", "none"] = "enforce"
    """Mode of the published MTA-STS policy."""
    mta_sts_max_age: float = 7 * _DAY
    """How long senders cache the MTA-STS policy."""
    tls_rpt: str | None = None
    """``mailto:`` or ``https:`` URI for TLS reports (``_smtp._tls``); null publishes none."""
    caa: tuple[str, ...] = ()
    """CA domains allowed to issue for the local domains (CAA ``issue``); empty: no CAA."""
    nodes: tuple[ClusterNode, ...] = ()
    """Every node of a cluster sharing one PostgreSQL database, this one (``hostname``)
    included; empty: this node alone, with ``ipv4``/``ipv6``. The zone publishes an MX
    (equal preference) and the addresses of each, and SPF covering all their addresses."""
    rate_limit: RateLimit = RateLimit()


@attrs.frozen(kw_only=True)
class ConnectionsPerIP:
    """Connections one client address may hold open at once on each listener (port 25's
    is ``inbound.max_connections_per_ip``)."""

    https: int = 100
    """On the HTTPS listener: an application's HTTP client pool shares one address."""
    submission: int = 100
    """On the SMTPS listener: an application's sending workers share one address."""
    http: int = 16
    """On port 80 (ACME challenges and redirects only)."""
    dns: int = 16
    """On DNS over TCP."""


@attrs.frozen(kw_only=True)
class Connections:
    """Bounds on open connections, so that no flood can take the descriptors Rail needs
    for its own work or lock out other listeners."""

    reserve: int | None = None
    """File descriptors kept back from the listeners for the queue, the registry, outbound
    delivery and webhooks. Null: 512 plus twice (``delivery.concurrency`` +
    ``webhooks.concurrency``)."""
    max_per_listener: int | None = None
    """Connections each TCP listener may hold at once. Null: the descriptor limit (raised
    to the hard limit at start) less ``reserve``, shared equally between the TCP
    listeners enabled (DNS counts as one), and at least 16."""
    per_ip: ConnectionsPerIP = ConnectionsPerIP()
    ipv6_prefix: int = 64
    """IPv6 clients in one network of this length count as one address for ``per_ip``
    (IPv4-mapped IPv6 addresses count as their IPv4 address)."""
    evict_idle: float | None = 1.0
    """When a listener is full, a new connection closes the one that has sent nothing for
    longest, if it has been silent this long; null refuses the new one instead."""
    tls_handshake_timeout: float = 10.0
    """A TLS handshake (on accept, or after STARTTLS) not complete after this long is
    aborted."""


@attrs.frozen(kw_only=True)
class Limits:
    """Bounds on what one peer may make Rail hold in memory or keep open."""

    http_body_size: int = 36 * _MB
    """Largest HTTP request body, in bytes, that Rail reads; larger requests are refused
    before they are buffered. The default leaves room for a ``message_size`` message whose
    attachments are base64 inside JSON."""
    http_idle_timeout: float = 60.0
    """Seconds after which an idle HTTP connection is closed, so idle clients cannot hold
    connections open forever."""
    message_size: int = 25 * _MB
    """Largest message Rail accepts (SMTP SIZE, the real DATA size, and a message built by
    the API). It bounds what one message makes Rail write and sign."""
    max_recipients: int = 100
    """Recipients per message (SMTP ``452 4.5.3`` beyond it, the API ``TOO_MANY_RECIPIENTS``)."""
    smtp_idle_timeout: float = 300.0
    """An SMTP session that sends nothing for this long is closed with ``421 4.4.2``
    (RFC 5321 §4.5.3.2: at least 5 minutes)."""
    smtp_transaction_timeout: float = 600.0
    """Longest time from MAIL to the end of DATA; a client that trickles a message slower
    than this is closed with ``421 4.4.2``."""
    smtp_bad_commands: int = 10
    """Refused or malformed commands one SMTP session may send before it is closed
    (``421 4.7.0``): a client that is not speaking SMTP should not occupy a connection."""
    http_header_timeout: float = 10.0
    """An HTTP request line and headers must arrive in full within this long (from the
    connection, or from the first byte of a later request on it), however slowly they
    trickle; otherwise ``408`` and the connection is closed."""
    http_body_grace: float = 10.0
    """Seconds an HTTP request body gets before ``http_min_body_rate`` applies."""
    http_min_body_rate: int = 1024
    """Bytes per second an HTTP request body must average after the grace: by ``t``
    seconds after the headers, ``(t - grace) * rate`` bytes must have arrived, or ``408``."""
    connections: Connections = Connections()
    header_size: int = 1 * _MB
    """Largest header section (octets up to the empty line) of a message Rail accepts:
    SMTP ``552 5.3.4`` after DATA, the API 413 ``HEADER_TOO_LARGE``. Every header parser
    and the DKIM signer read the whole section; no real message comes near it."""
    header_fields: int = 1000
    """Most header fields in a message Rail accepts; more are refused as for ``header_size``."""
    smtp_command_timeout: float = 30.0
    """A command line must arrive whole (up to its CRLF) within this long of its first
    byte, else ``421 4.4.2``: the idle timeout restarts with every byte, so without this
    a client sending one byte at a time could hold a session forever."""
    smtp_idle_commands: int = 100
    """Commands that move no mail (NOOP, RSET, VRFY, EXPN, HELP, EHLO, HELO) an SMTP
    session may send between two accepted messages; the next is answered ``421 4.7.0``
    and the session closed (as Postfix's ``smtpd_junk_command_limit``)."""
    data_memory: int = 256 * _MB
    """Message data all SMTP sessions together may hold in memory (each buffers its
    message until the end of DATA and while it is checked and stored); a session that
    would exceed it answers ``452 4.3.1`` and the sender retries later."""


@attrs.frozen(kw_only=True)
class ClientLimits:
    """How much mail one client may send (``clients_default.limits``, or one client's own
    under ``clients.NAME.limits``); null is no limit. Counted over sliding windows in
    memory; see docs/limits.md for the SMTP and API answers and what a restart keeps."""

    messages_per_minute: int | None = None
    """Messages accepted from the client in the last minute (SMTP ``452 4.7.0`` at MAIL
    FROM, the API ``429 RATE_LIMITED``)."""
    messages_per_hour: int | None = None
    """Messages accepted from the client in the last hour (as for the minute)."""
    messages_per_day: int | None = None
    """Messages accepted from the client in the last 24 hours (as for the minute)."""
    recipients_per_day: int | None = None
    """Recipients of the messages accepted from the client in the last 24 hours (SMTP
    ``452 4.7.0`` at the RCPT TO over it, the API ``429 RATE_LIMITED``)."""


@attrs.frozen(kw_only=True)
class Client:
    """Settings of one client (``clients.NAME``), or of every client
    (``clients_default``)."""

    limits: tuple[tuple[str, int | None], ...] = ()
    """Under ``clients.NAME``: the ``ClientLimits`` keys set for this client, each replacing
    the default's (null: no limit for this client); the others are the default's. Under
    ``clients_default`` every key is read, an absent one being null."""
    sandbox: bool | None = None
    """Accept, sign and record the client's mail but deliver none of it: each recipient
    becomes ``sent`` with a sandbox reply and its events carry ``"sandbox": true``. Null
    (only under ``clients.NAME``): as ``clients_default``, which is false unless set."""


@attrs.frozen(kw_only=True)
class Retention:
    """How long Rail keeps messages once nothing more will be done with them (every
    recipient sent, bounced, failed or deleted; every webhook job delivered or failed)."""

    body: float = 7 * _DAY
    """After this long the message's bytes are deleted; its status (``GET
    /api/v1/messages/{id}``, ``/api/v1/inbound/{id}``) stays, saying the body is gone."""
    record: float = 30 * _DAY
    """After this long everything of the message is deleted; its status look-up answers
    ``404 MESSAGE_EXPIRED``. At least ``body``."""


@attrs.frozen(kw_only=True)
class Storage:
    """The durable queue under ``data_dir/queue``."""

    max_queued: int = 1_000_000
    """Messages waiting for delivery beyond which new mail is refused as temporary
    (``452 4.3.1`` / HTTP 503 ``QUEUE_FULL``), so a stuck destination cannot fill the disk."""
    min_free_space: int = 512 * _MB
    """Free space on the queue's file system below which new mail is refused as temporary,
    leaving room for the queue's own bookkeeping and for the operator to act."""
    reserve: int = 16 * _MB
    """Space kept allocated in ``data_dir/queue/reserve`` and freed when the disk is
    nearly full, so that Rail can still start and record deliveries; 0 keeps none."""
    retention: Retention = Retention()
    backend: str = "sqlite"
    """Where the queue, the registry and the other shared state live: ``sqlite`` (embedded,
    under ``data_dir``, one process) or ``postgresql`` (one database shared by several
    worker processes and hosts)."""
    dsn: str | None = None
    """The libpq connection string of the PostgreSQL database (``backend: postgresql``
    only), e.g. ``host=db.example port=5432 dbname=rail user=rail``; keep the password out
    of it (``passfile=`` or ``~/.pgpass``)."""
    lease: float = 60.0
    """Seconds a node holds the delivery, webhook and event jobs it claims without renewing
    them (``backend: postgresql`` only): it renews every third of this while it works, and
    a node that dies loses its jobs to the others after at most this long."""


@attrs.frozen(kw_only=True)
class SmarthostAuth:
    """The login Rail uses at its relay (SMTP AUTH PLAIN, else LOGIN), only inside TLS."""

    username: str
    """The relay account's user name."""
    password_file: Path
    """A file holding the password (its first line), read at start, so the password is
    not in the configuration file; keep it readable by Rail only."""


@attrs.frozen(kw_only=True)
class Smarthost:
    """A provider's relay that takes all outbound mail instead of recipients' MX hosts."""

    host: str
    """Host name or IP address of the relay; its A/AAAA records are used, not MX."""
    port: int = 25
    """The relay's SMTP port: 25 or 587 with STARTTLS, 465 with ``tls: implicit``."""
    tls: Literal["required", "implicit", "opportunistic"] = "required"
    """``required``: STARTTLS with the relay's certificate verified against the system trust
    store (and ``ca_file``) and ``host``, or no delivery (deferred). ``implicit``: the same
    verification, TLS from the first byte (port 465). ``opportunistic``: as for MX hosts."""
    ca_file: Path | None = None
    """PEM file of extra trust anchors for the relay's certificate (a private CA)."""
    auth: SmarthostAuth | None = None
    """Log in to the relay; needs ``tls`` ``required`` or ``implicit``."""


@attrs.frozen(kw_only=True)
class MTASTS:
    """MTA-STS (RFC 8461) for outbound mail: recipient domains' policies are honoured."""

    enabled: bool = True
    """Look up, cache and apply recipient domains' MTA-STS policies (``enforce``: only the
    listed MX hosts, verified TLS, else deferred; ``testing``: reported, delivered)."""
    ca_file: Path | None = None
    """PEM file of trust anchors added to the system's, for policy hosts and for MX
    certificates under a policy. Only tests and private networks need it."""
    port: int = 443
    """Port of ``mta-sts.<domain>`` policy hosts. Only tests change it."""
    allow_private: bool = False
    """Fetch policies from ``mta-sts.<domain>`` hosts with loopback, private or other
    non-public addresses. Off, a recipient domain cannot point Rail's HTTPS requests at
    the internal network. Only tests turn it on."""


@attrs.frozen(kw_only=True)
class Delivery:
    """Outbound delivery to recipients' MX hosts: routing, retries and concurrency."""

    hold: bool = False
    """Keep accepted mail queued and deliver nothing: for development machines with no
    route to port 25, and for maintenance. Queued mail goes out once a restart clears it."""

    nameservers: tuple[tuple[str, int], ...] | None = None
    """Resolvers for MX and address look-ups as ``"ip"`` or ``"ip:port"`` (``"[ip6]:port"``);
    null uses the system's ``/etc/resolv.conf``. Tests point it at a local server."""
    port: int = 25
    """Port of recipients' MX hosts. Only tests change it."""
    smarthost: Smarthost | None = None
    """Relay everything through this host instead of looking up MX records."""
    mta_sts: MTASTS = MTASTS()
    """How recipient domains' MTA-STS policies are applied (not to a smarthost)."""
    dane: bool = False
    """Honour DANE (RFC 7672): MX hosts of DNSSEC-signed domains that publish TLSA records
    get TLS with their certificate checked against those records, else no delivery
    (deferred). Takes precedence over MTA-STS. Needs ``dane_resolver``."""
    dane_resolver: tuple[str, int] | None = None
    """The DNSSEC-validating resolver (e.g. unbound) asked for MX and TLSA records with
    the DO bit, as ``"ip"`` or ``"ip:port"`` on loopback: Rail believes its AD bit, which
    nothing protects on the way from a resolver elsewhere."""
    retry: tuple[float, ...] = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)
    """Delay before each retry of a deferred recipient, the last one repeating, each with
    ±10% jitter so retries of a burst spread out."""
    max_age: float = 5 * _DAY
    """A recipient still undelivered this long after acceptance bounces (RFC 5321 §4.5.4.1
    suggests 4 to 5 days)."""
    concurrency: int = 100
    """Outbound SMTP connections open at once, in all."""
    per_destination: int = 10
    """Connections open at once to one recipient domain, so Rail does not look like an
    attack to a small site's server."""
    messages_per_connection: int = 100
    """Messages sent over one connection before it is closed and a new one opened."""
    connect_timeout: float = 30.0
    """Seconds to wait for a TCP connection to an MX host before trying the next address."""
    prepare_timeout: float = 30.0
    """Seconds a message's DKIM signing (and, for a domain's first message, the creation of
    its keys) may take in its worker thread; a message over it is quarantined (``failed``,
    never retried), since a retry, or a restart, would only spend the time again."""
    prepare_threads: int = 4
    """Messages signed at once, each in a worker thread off the reactor. Up to as many
    threads again may still be busy with messages that overran ``prepare_timeout``, so a
    few of those never stop the signing of the rest."""


@attrs.frozen(kw_only=True)
class TLSRPT:
    """TLS-RPT (RFC 8460): daily reports of outbound TLS outcomes to recipient domains."""

    enabled: bool = False
    """Count every outbound session's TLS outcome per recipient domain and send each
    domain that publishes an ``_smtp._tls`` record its report of the previous UTC day."""
    organization: str | None = None
    """``organization-name`` of the reports; null: ``hostname``."""
    contact: str | None = None
    """``contact-info`` of the reports; null: ``mailto:postmaster@<hostname>``."""
    sender: str | None = None
    """From address of the report messages (DKIM-signed for its domain); null:
    ``tlsrpt-noreply@<hostname>``."""
    allow_private: bool = False
    """POST ``https:`` reports to hosts with loopback, private or other non-public
    addresses. Off, a recipient domain's ``_smtp._tls`` record cannot point Rail's HTTPS
    requests at the internal network. Only tests turn it on."""


@attrs.frozen(kw_only=True)
class Shutdown:
    """How Rail stops on SIGTERM or SIGINT."""

    drain_delay: float = 2.0
    """Seconds ``/readyz`` answers 503 before the listeners close, so load balancers stop
    sending new connections before they would be refused."""
    grace_period: float = 10.0
    """Seconds in-flight SMTP sessions and deliveries get to finish once the listeners have
    closed; what is still running then is cut off (its mail stays queued) and Rail exits."""


@attrs.frozen(kw_only=True)
class Web:
    """The HTTPS site's own settings."""

    public_stats: Literal["admin", "loopback", "public"] = "loopback"
    """Who may read ``/stats`` and ``/metrics``: ``admin`` (admin certificates only),
    ``loopback`` (admin certificates, and any request from 127.0.0.0/8 or ::1) or
    ``public`` (everyone who reaches the HTTPS listener)."""


@attrs.frozen(kw_only=True)
class Logging:
    """How Rail writes its log (where it goes is twistd's ``-l``, ``-n`` and ``--syslog``)."""

    format: Literal["text", "json"] = "text"
    """``text``: twistd's lines, delivery results as ``key=value`` pairs; ``json``: one JSON
    object per line, for a log collector to index without parsing text. Read at start."""


@attrs.frozen(kw_only=True)
class Bounces:
    """The signed return path and the bounces and complaints that come back to it
    (docs/bounces.md)."""

    enabled: bool = True
    """Send mail with a per-message signed return path on the sender domain's bounce
    domain, and read the DSNs and ARF complaints that come back to it (events and
    suppressions). Off: mail keeps the app's own address as its return path, and what
    bounces later goes to the app as any mail would."""
    domain: str = "bounces.{domain}"
    """The bounce domain of each sender domain: ``{domain}`` stands for the sender's
    domain, once, as whole labels. Rail's zone publishes an MX and an SPF record for it."""
    max_report_size: int = 1024 * 1024
    """Octets of a message to a return path: a larger one is refused (``552 5.3.4``).
    Reports quote at most the original message's header section or a part of it; at
    most 4 MB, which the reader reads on the reactor thread (about 7 ms per MB)."""


@attrs.frozen(kw_only=True)
class Config:
    """A whole, valid Rail configuration."""

    hostname: str
    """Rail's own DNS name (lowercase): the name in its server certificate, its SMTP
    greeting and the target of the MX records it publishes. Required: no guess is safe."""
    tls: TLS
    """Where the server certificate comes from. Required, because the two modes are for
    different worlds (self-signed for development, files for production)."""
    data_dir: Path = Path("/var/lib/rail")
    """Where Rail keeps its CA, queue and registry. A relative path in the file is taken
    relative to the file's directory, not to wherever Rail happens to be started."""
    local_domains: tuple[str, ...] = ()
    """Mail domains Rail receives mail for (lowercase, no duplicates), in addition to the
    domains of valid client certificates' sender addresses."""
    listen: Listen = Listen()
    pki: PKI = PKI()
    webhooks: Webhooks = Webhooks()
    limits: Limits = Limits()
    storage: Storage = Storage()
    delivery: Delivery = Delivery()
    inbound: Inbound = Inbound()
    dns: DNS = DNS()
    tlsrpt: TLSRPT = TLSRPT()
    shutdown: Shutdown = Shutdown()
    web: Web = Web()
    logging: Logging = Logging()
    clients_default: Client = Client()
    """Limits and sandbox flag of every client, unless ``clients`` says otherwise."""
    clients: tuple[tuple[str, Client], ...] = ()
    """Per client name (a certificate's CN): what differs from ``clients_default``."""
    bounces: Bounces = Bounces()
    workers: int | str = 1
    """How many Rail processes serve this host: a number, or ``auto`` (one per core).
    More than one needs ``storage.backend: postgresql``; ``twistd rail --workers``
    overrides it (docs/scaling.md, "Worker processes")."""
    worker_sockets: Literal["reuseport", "shared"] = "reuseport"
    """How several workers share a listener: ``reuseport``, a socket per worker bound with
    ``SO_REUSEPORT``, among which the kernel spreads connections evenly; ``shared``, one
    socket all workers accept from (a worker that dies leaves no socket unserved, but one
    worker may take most connections)."""

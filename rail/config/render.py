"""The development configuration that a fresh checkout runs with.

It needs no root and no internet: the HTTPS listener is on a high port on 127.0.0.1, the
server certificate comes from Rail's own CA, and webhooks may point at a local application
over plain http. Every key is written out with a comment, so the file also teaches the format.
"""

from __future__ import annotations

import json

from rail.config.listen import ListenSpec

__all__ = ["dev_config_yaml"]

_TEMPLATE = """\
# Rail development configuration. Not for production: the server certificate is
# self-signed and webhooks may use plain http to loopback addresses.
# Reference: docs/configuration.md. Check it with: rail config-check --config FILE

# Rail's own DNS name: its certificate, SMTP greeting and MX target.
hostname: {hostname}

# Where Rail keeps its CA, queue and registry. Relative to this file's directory.
data_dir: {data_dir}

# Mail domains Rail receives mail for (plus the domains in client certificates).
local_domains: [{hostname}]

# Listeners are Twisted endpoint descriptions; null disables one. They stay on
# 127.0.0.1: listening on other addresses is an explicit choice.
listen:
  https: {https}            # HTTPS API: send, who, health
  submission: {submission}  # SMTPS (implicit TLS) for apps, client certificate required
  inbound: {inbound}     # SMTP with STARTTLS for mail to local domains (25 in production)
  http: {http}        # ACME challenges, redirect to https (80 in production)
  dns: {dns}         # authoritative DNS, UDP and TCP (53 in production)

# Where the server certificate comes from: self_signed (issued by Rail's CA,
# for development) or cert_file and key_file (PEM files, for production).
tls:
  self_signed: true

# Rail's CA, which issues the client certificates applications use.
pki:
  key_type: ed25519        # default for `rail certs issue`: ed25519, ecdsa-p256 or rsa2048
  client_validity: 365d    # how long a new client certificate is valid

webhooks:
  allow_http_loopback: true  # accept http:// webhooks on localhost, for local apps
  allow_private: true        # let webhooks reach loopback and private addresses
  timeout: 30s               # a POST that takes longer counts as failed and is retried
  max_age: 3d                # undelivered this long after receipt: fail, DSN to the sender
  concurrency: 4             # POSTs in flight at once to one webhook URL

# Mail from the internet on the inbound listener.
inbound:
  require_tls: false         # true refuses MAIL before STARTTLS (private relays only)
  spf_fail: reject           # SPF fail: reject (550 5.7.23) or tag
  dmarc: enforce             # DMARC p=reject refused (550 5.7.1), p=quarantine tagged
  postmaster: app            # client that receives postmaster@ every local domain
  routes: []                 # e.g. [{{match: "*@{bare_hostname}", client: app}}]

# The records Rail's DNS serves for each local domain (see `rail dns records`).
dns:
  ipv4: ["127.0.0.1"]        # public addresses of the host name (A, SPF ip4:)
  ttl: 1h
  dmarc_policy: reject

limits:
  http_body_size: 36MB       # largest HTTP request body Rail reads
  http_idle_timeout: 60s     # idle HTTP connections are closed after this
  message_size: 25MB         # largest message (SMTP SIZE, DATA, API)
  max_recipients: 100        # recipients per message
  smtp_idle_timeout: 5m      # idle SMTP sessions are closed (421 4.4.2)
  smtp_transaction_timeout: 10m  # MAIL to end of DATA
  smtp_bad_commands: 10      # errors before an SMTP session is closed (421 4.7.0)
  smtp_command_timeout: 30s  # a command line must arrive whole within this (421 4.4.2)
  smtp_idle_commands: 100    # NOOP, RSET, VRFY... between accepted messages (421 4.7.0)
  data_memory: 256MB         # message data of all SMTP sessions in memory (452 4.3.1)

# The durable queue under data_dir/queue.
storage:
  max_queued: 1000000        # beyond this, new mail is refused as temporary (452 4.3.1)
  min_free_space: 100MB      # free disk below this refuses new mail as temporary

# Outbound delivery to recipients' MX hosts. A development machine usually has no
# route to the internet's port 25, so mail is held in the queue (visible through
# GET /api/v1/messages/ID); set hold: false to deliver it.
delivery:
  hold: true                 # keep accepted mail queued, deliver nothing
  retry: [1m, 5m, 15m, 30m, 1h, 2h, 4h]  # delays between attempts; the last repeats
  max_age: 5d                # undelivered this long after acceptance: bounce
  concurrency: 100           # outbound connections in all
  per_destination: 10        # outbound connections per recipient domain

shutdown:
  drain_delay: {drain_delay}  # /readyz answers 503 this long before listeners close
  grace_period: 10s          # in-flight sessions and deliveries get this long to finish
"""


def dev_config_yaml(
    hostname: str,
    data_dir: str,
    https_port: int,
    drain_delay: str = "1s",
    submission_port: int = 8465,
    inbound_port: int = 8025,
    http_port: int = 8080,
    dns_port: int = 8053,
) -> str:
    """A commented development ``rail.yaml`` for ``hostname``, keeping data in ``data_dir``.

    Values are written as JSON strings, which YAML reads unchanged, so no name or path can
    be mistaken for another YAML type or break the document.
    """
    https = ListenSpec(kind="tcp", port=https_port, interface="127.0.0.1").description
    submission = ListenSpec(kind="tcp", port=submission_port, interface="127.0.0.1").description

    def listen(port: int) -> str:
        return json.dumps(ListenSpec(kind="tcp", port=port, interface="127.0.0.1").description)

    return _TEMPLATE.format(
        hostname=json.dumps(hostname),
        bare_hostname=hostname,
        inbound=listen(inbound_port),
        http=listen(http_port),
        dns=listen(dns_port),
        data_dir=json.dumps(data_dir),
        https=json.dumps(https),
        submission=json.dumps(submission),
        drain_delay=json.dumps(drain_delay),
    )

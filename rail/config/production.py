"""The production configuration ``rail init --production`` writes.

Everything in it is derived, not asked: the host name (given, or this machine's fully
qualified name), its public addresses (from the name's own DNS records), listeners on every
IPv4 address at the standard ports, and the server certificate from Let's Encrypt by ACME.
Keys left at their defaults are not written; docs/configuration.md lists them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

__all__ = ["LETS_ENCRYPT", "PRODUCTION_DATA_DIR", "production_config_yaml"]

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
PRODUCTION_DATA_DIR = "/var/lib/rail"

_TEMPLATE = """\
# Rail production configuration, written by `rail init --production`.
# Reference: docs/configuration.md and docs/production.md.
# Check it with: rail config-check --config FILE

# Rail's public DNS name: its certificate, SMTP greeting and MX target.
hostname: {hostname}

# Rail's CA, queue, registry, DKIM and ACME keys; owned by the service user.
data_dir: {data_dir}

# Mail domains Rail receives mail for and signs (plus the domains of the sender
# addresses in client certificates).
local_domains: {domains}

# Every IPv4 address, standard ports. Ports below 1024 need CAP_NET_BIND_SERVICE
# (contrib/rail.service) or a start as root (twistd --uid).
listen:
  https: {https}  # HTTPS API: send, status, health
  submission: {submission}  # SMTPS for applications (client certificate)
  inbound: {inbound}  # SMTP with STARTTLS: mail from the internet
  http: {http}  # ACME HTTP-01 challenges; the rest redirects to https
  # Authoritative DNS, for zones delegated to Rail: "tcp:53:interface=0.0.0.0"
  dns: null

# The server certificate, from Let's Encrypt by ACME (HTTP-01 on port 80). Until the first
# one is issued, Rail serves a certificate from its own CA.
tls:
  acme:
    directory: {directory}
{email}
# The records `rail dns records` prints (and Rail's DNS server serves, if enabled).
dns:
  ipv4: {ipv4}  # public addresses of the host name (A, SPF ip4:)
  ipv6: {ipv6}  # (AAAA, SPF ip6:)

# Every client's sending limits (docs/limits.md), so a leaked certificate cannot send
# without bound; raise them for one client under clients.NAME.limits, or null one.
clients_default:
  limits:
    messages_per_minute: 600
    messages_per_hour: 10000
    messages_per_day: 50000
    recipients_per_day: 100000
"""


def production_config_yaml(
    hostname: str,
    data_dir: str = PRODUCTION_DATA_DIR,
    domains: Sequence[str] = (),
    acme_email: str | None = None,
    ipv4: Sequence[str] = (),
    ipv6: Sequence[str] = (),
    acme_directory: str = LETS_ENCRYPT,
) -> str:
    """A commented production ``rail.yaml``. Values are written as JSON, which YAML reads
    unchanged, so no name or path can be mistaken for another YAML type."""

    def listen(port: int) -> str:
        return json.dumps(f"tcp:{port}:interface=0.0.0.0")

    email = (
        f"    email: {json.dumps(acme_email)}  # the CA's expiry warnings go here\n"
        if acme_email
        else "    # email: you@example.com  # for the CA's expiry warnings\n"
    )
    return _TEMPLATE.format(
        hostname=json.dumps(hostname),
        data_dir=json.dumps(data_dir),
        domains=json.dumps(list(domains)),
        https=listen(443),
        submission=listen(465),
        inbound=listen(25),
        http=listen(80),
        directory=json.dumps(acme_directory),
        email=email,
        ipv4=json.dumps(list(ipv4)),
        ipv6=json.dumps(list(ipv6)),
    )

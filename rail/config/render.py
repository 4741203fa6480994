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
  https: {https}

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

limits:
  http_body_size: 1MB        # largest HTTP request body Rail reads
  http_idle_timeout: 60s     # idle HTTP connections are closed after this

shutdown:
  drain_delay: {drain_delay}  # /readyz answers 503 this long before listeners close
"""


def dev_config_yaml(hostname: str, data_dir: str, https_port: int, drain_delay: str = "1s") -> str:
    """A commented development ``rail.yaml`` for ``hostname``, keeping data in ``data_dir``.

    Values are written as JSON strings, which YAML reads unchanged, so no name or path can
    be mistaken for another YAML type or break the document.
    """
    https = ListenSpec(kind="tcp", port=https_port, interface="127.0.0.1").description
    return _TEMPLATE.format(
        hostname=json.dumps(hostname),
        data_dir=json.dumps(data_dir),
        https=json.dumps(https),
        drain_delay=json.dumps(drain_delay),
    )

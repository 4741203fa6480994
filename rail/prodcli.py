"""``rail init --production``: parsing done by rail.cli, the work in rail.prodsetup."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from socket import getfqdn

from rail.config.production import PRODUCTION_DATA_DIR
from rail.prodsetup import SetupError, init_production, public_addresses

__all__ = ["TAC", "init_production_command", "tac_path_command"]

# Package data (setup.cfg), so it is there after a non-editable ``pip install``.
TAC = Path(__file__).resolve().parent / "rail.tac"


def init_production_command(args: argparse.Namespace) -> int:
    """Write the config and say what to do next; exit 1 with one line when it cannot."""
    if any(
        getattr(args, name) is not None
        for name in ("https_port", "submission_port", "inbound_port", "http_port", "dns_port")
    ):
        sys.stderr.write("rail init: --production uses the standard ports; edit the config\n")
        return 2
    path = Path(args.config)
    try:
        setup = init_production(
            path,
            hostname=args.hostname,
            data_dir=args.data_dir or PRODUCTION_DATA_DIR,
            domains=args.domain or (),
            acme_email=args.acme_email,
            force=args.force,
            fqdn=getfqdn,
            addresses=public_addresses,
        )
    except SetupError as e:
        sys.stderr.write(f"rail init: {e}\n")
        return 1
    config = setup.config
    dns = config.dns
    print(f"wrote {path}: production configuration for {config.hostname}")
    print(f"  data        {config.data_dir}/ (created at the first start)")
    print("  listeners   0.0.0.0 ports 443 (HTTPS), 465 (SMTPS), 25 (SMTP), 80 (ACME)")
    acme = config.tls.acme
    contact = acme.email if acme is not None and acme.email else "none"
    print(f"  certificate Let's Encrypt (ACME HTTP-01), contact {contact}")
    addresses = ", ".join([*dns.ipv4, *dns.ipv6])
    if not addresses:
        addresses = f"none: {config.hostname} has no public address in DNS yet; set dns.ipv4"
    print(f"  addresses   {addresses}")
    print(f"  domains     {', '.join(config.local_domains) or '(those of client certificates)'}")
    print("Next (docs/production.md):")
    print(f"  rail config-check --config {path}")
    print("  install contrib/rail.service, then: systemctl enable --now rail")
    print(f"  rail dns records --config {path}   # the records to publish")
    return 0


def tac_path_command(args: argparse.Namespace) -> int:
    """Print where the installed ``rail.tac`` is, for ``twistd -ny "$(rail tac-path)"``."""
    if not TAC.is_file():
        sys.stderr.write(f"rail: {TAC}: not installed with the package\n")
        return 1
    print(TAC)
    return 0

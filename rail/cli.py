"""The ``rail`` operator command.

Exit codes are part of the interface: 0 ok, 1 the operation failed, 2 usage error or
invalid config. Every failure is one line per problem on stderr, naming the item, and
never a traceback. Subcommands only parse and print; the work is in rail.pki.operations
and rail.devsetup.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn, TypeVar

from rail.config import Config, ConfigError, load_config
from rail.dkim.keys import DKIMKeyError, KeyStore
from rail.dkim.records import zone_line
from rail.dkim.rotation import DomainError, Rotated, dkim_domains, rotate_domain
from rail.eventscli import (
    add_client_commands,
    add_issue_options,
    check_issue_events,
    record_issue_events,
)
from rail.forward.check import forwarding_problems
from rail.pki.bundle import BROWSER_KEY_TYPE, BundleError, read_password, write_bundle
from rail.pki.files import PKIError
from rail.pki.inspect import format_time, info_to_json, inspect_certificate, parse_certificate
from rail.pki.issue import ClientRequest
from rail.pki.keys import KEY_TYPES
from rail.pki.operations import OperationError, issue_client, revoke
from rail.pki.ownership import address_conflicts
from rail.pki.registry import AddressConflictError, RegistryError
from rail.queuecli import add_queue_commands
from rail.shared.mirror import MirrorError, synced
from rail.shared.pending import oldest_pending
from rail.shared.registry import SharedSource, registry_source
from rail.store.model import StoreUnavailableError
from rail.suppressionscli import add_suppression_commands
from rail.version import rail_version
from rail.webhooks.secretcli import add_webhook_secret_command, verification_keys

__all__ = ["main"]

DEFAULT_CONFIG = "/etc/rail/rail.yaml"


class _CommandError(Exception):
    """Carries the exit code and the lines to print."""

    def __init__(self, code: int, lines: Sequence[str]) -> None:
        super().__init__(*lines)
        self.code = code
        self.lines = list(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _CommandError(2, [f"{self.prog}: {message}"])


T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def _config(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        raise _CommandError(2, [str(p) for p in e.problems]) from None


def _cmd_config_check(args: argparse.Namespace) -> int:
    config = _config(args.config)
    loops = forwarding_problems(config, _now())
    if loops:
        raise _CommandError(2, loops)
    warnings = _config_warnings(config)
    for line in warnings:
        sys.stderr.write(f"rail: warning: {line}\n")
    plural = "" if len(warnings) == 1 else "s"
    print(f"{args.config}: ok" + (f" ({len(warnings)} warning{plural})" if warnings else ""))
    return 0


def _config_warnings(config: Config) -> list[str]:
    """What is valid but probably not meant: settings that cancel out, and addresses
    that valid certificates of several clients hold (older registries, or issued with
    --allow-shared-address)."""
    warnings = []
    webhooks = config.webhooks
    if webhooks.allow_http_loopback and not webhooks.allow_private:
        warnings.append(
            "webhooks.allow_http_loopback has no effect while webhooks.allow_private is"
            " false: no webhook reaches a loopback address"
        )
    source = registry_source(config)
    try:
        if not source.exists():  # checking must not create a data directory
            return warnings
        with source.open() as registry:
            records = registry.list_all()
    except RegistryError as e:
        # The file is valid whatever the registry's state; say what was not checked.
        warnings.append(f"address conflicts not checked: {e}")
        return warnings
    for conflict in address_conflicts(records, _now()):
        warnings.append(
            f"{conflict.address} is in valid certificates of more than one client:"
            f" {conflict.describe()}; each may send as it, and inbound mail for it"
            f" goes to {conflict.owner!r}, issued first (revoke the certificates"
            " that should not hold it)"
        )
    return warnings


SAMPLE_SENDER = "app@{hostname}"


def _cmd_init(args: argparse.Namespace) -> int:
    if args.production:
        from rail.prodcli import init_production_command

        return init_production_command(args)
    from rail.devsetup import DEV_PORTS, SAMPLE_CLIENT, init_dev

    if args.directory is None or args.data_dir is not None or args.acme_email or args.domain:
        raise _CommandError(
            2, ["rail init: --dev DIR sets up development; --data-dir, --acme-email and"
                " --domain are for --production"]
        )  # fmt: skip
    ports = {name: getattr(args, name) or port for name, port in DEV_PORTS.items()}
    setup = init_dev(Path(args.directory), args.hostname or "rail.test", now=_now(), **ports)
    d = setup.directory
    https = setup.config.listen.https
    port = https.port if https is not None else "(disabled)"
    state = "created" if setup.created else "already initialised, reusing"
    print(f"Rail development set-up in {d}/ ({state})")
    print(f"  config       {setup.config_path}")
    print(f"  data         {setup.config.data_dir}/")
    print(f"  CA           {setup.ca_copy}  (also {setup.config.data_dir}/ca/ca.crt)")
    print(f"  server cert  {setup.config.data_dir}/tls/server.crt, issued by the CA for")
    print(f"               {setup.config.hostname}, localhost, 127.0.0.1, ::1")
    print(f"  client cert  {setup.client_certificate} + {setup.client_key}")
    public_key, secret = verification_keys(setup.config.data_dir, SAMPLE_CLIENT)
    print("  webhooks     signed (Standard Webhooks, docs/webhooks.md); verify with")
    print(f"               public key {public_key}  (v1a, ed25519)")
    print(f"               secret     {secret}  (v1, HMAC, {SAMPLE_CLIENT}'s only)")
    print("Start Rail:")
    print(f"  twistd -n --pidfile= rail --config {setup.config_path}")
    print("Then, from the same directory:")
    print(
        f"  curl --cacert {setup.ca_copy} --cert {setup.client_certificate} "
        f"--key {setup.client_key} https://127.0.0.1:{port}/api/who"
    )
    submission = setup.config.listen.submission
    if submission is not None:
        print(
            f"  swaks --server 127.0.0.1 --port {submission.port} --tls-on-connect "
            f"--tls-cert {setup.client_certificate} --tls-key {setup.client_key} "
            f"--from {SAMPLE_SENDER.format(hostname=setup.config.hostname)} --to you@example.com"
        )
    return 0


def _cmd_issue(args: argparse.Namespace) -> int:
    config = _config(args.config)
    events = check_issue_events(config, args)
    bundle_password = _bundle_password(args)
    days = args.days
    validity = (
        timedelta(days=days) if days is not None else timedelta(seconds=config.pki.client_validity)
    )
    request = ClientRequest(
        name=args.name,
        emails=tuple(args.email or ()),
        webhook=args.webhook,
        key_type=args.key_type or _bundle_key_type(args) or config.pki.key_type,
        validity=validity,
        admin=args.admin,
    )
    issued = issue_client(
        config,
        request,
        Path(args.out),
        _now(),
        force=args.force,
        allow_shared_addresses=args.allow_shared_address,
        source=registry_source(config),
    )
    record = issued.record
    for conflict in issued.shared:
        sys.stderr.write(
            f"rail: warning: {conflict.address} is shared (--allow-shared-address) with the"
            f" valid certificate of {conflict.describe()}; each may send as it, and its"
            f" inbound mail goes to {conflict.owner!r}, whose certificate was issued first\n"
        )
    print(f"issued {record.name}: serial {record.serial:x}, {record.key_type}")
    print(f"  role     {record.role}")
    print(f"  senders  {', '.join(record.senders) or '(none: cannot send mail)'}")
    print(f"  webhook  {record.webhook or '(none)'}")
    print(f"  expires  {format_time(record.not_after)}")
    print(f"  wrote    {issued.certificate_path} and {issued.key_path} (key mode 0600)")
    if bundle_password is not None:
        bundle = Path(args.out) / f"{record.name}.p12"
        try:
            write_bundle(
                issued.certificate_path,
                issued.key_path,
                registry_source(config).load_ca().certificate,
                bundle,
                bundle_password,
            )
        except BundleError as error:
            raise _CommandError(1, [f"rail: {error}"]) from None
        print(f"  wrote    {bundle} (PKCS#12 for a browser, mode 0600; see docs/console.md)")
    for line in record_issue_events(config, record.name, events, args.events_url, _now()):
        print(line)
    if record.webhook:
        public_key, secret = verification_keys(config.data_dir, record.name, config)
        print("  webhooks are signed (Standard Webhooks; see docs/webhooks.md); verify with")
        print(f"    public key  {public_key}  (v1a, ed25519)")
        print(f"    secret      {secret}  (v1, this client's only)")
    if issued.siblings:
        serials = ", ".join(format(r.serial, "x") for r in issued.siblings)
        print(
            f"  note     {record.name} has other valid certificates (serial {serials}); once"
            f" the new one is deployed, revoke each old one by serial: rail certs revoke SERIAL"
        )
    return 0


def _bundle_key_type(args: argparse.Namespace) -> str | None:
    """``--p12`` without ``--key-type``: a key type browsers offer."""
    return BROWSER_KEY_TYPE if args.p12 else None


def _bundle_password(args: argparse.Namespace) -> bytes | None:
    """The ``--p12`` password, asked (or read) before anything is issued."""
    if not args.p12:
        if args.p12_password_file is not None:
            raise _CommandError(2, ["rail: --p12-password-file needs --p12"])
        return None
    if args.key_type == "ed25519":
        raise _CommandError(
            2,
            ["rail: --p12: browsers do not accept Ed25519 client keys; use --key-type ecdsa-p256"],
        )
    try:
        return read_password(args.p12_password_file, getpass.getpass)
    except BundleError as error:
        raise _CommandError(2, [f"rail: {error}"]) from None


def _cmd_list(args: argparse.Namespace) -> int:
    config = _config(args.config)
    now = _now()
    source = registry_source(config)
    records = []
    if source.exists():  # listing must not create a data directory
        with source.open() as registry:
            records = registry.list_all()
    if args.json:
        rows = [
            {
                "name": r.name,
                "role": r.role,
                "serial": format(r.serial, "x"),
                "senders": list(r.senders),
                "webhook": r.webhook,
                "key_type": r.key_type,
                "not_after": format_time(r.not_after),
                "status": r.status(now),
                "revoked_at": format_time(r.revoked_at) if r.revoked_at else None,
            }
            for r in records
        ]
        print(json.dumps(rows, indent=2))
        return 0
    header = ("NAME", "ROLE", "SERIAL", "STATUS", "EXPIRES", "SENDERS", "WEBHOOK")
    table = [header] + [
        (
            r.name,
            r.role,
            format(r.serial, "x"),
            r.status(now),
            format_time(r.not_after),
            ",".join(r.senders) or "-",
            r.webhook or "-",
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        print("  ".join([*cells, row[-1]]))
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    config = _config(args.config)
    source = registry_source(config)
    for record in revoke(config, args.certificate, _now(), source=source):
        print(f"revoked {record.name}: serial {record.serial:x}")
    if source.crl_in_transaction:
        print("every running node refuses it at once (notified), at the latest within a second")
    else:
        print("a running Rail refuses it within a second (it re-reads the CRL every second)")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    config = _config(args.config)
    try:
        data = Path(args.file).read_bytes()
    except OSError as e:
        raise _CommandError(1, [f"{args.file}: {e.strerror}"]) from None
    try:
        certificate = parse_certificate(data)
    except ValueError as e:
        raise _CommandError(1, [f"{args.file}: {e}"]) from None
    now = _now()
    source = registry_source(config)
    ca = source.load_ca()
    with source.open() as registry:
        revoked = frozenset(serial for serial, _when in registry.revoked())
    info = inspect_certificate(certificate, ca.certificate, revoked, now)
    print(json.dumps(info_to_json(info), indent=2))
    return 0


def _dkim_domains(config: Config, domain: str | None) -> tuple[KeyStore, list[str]]:
    """The key store and the domains a ``rail dkim`` command acts on: DOMAIN if it is local
    (or already has keys), else every local domain and every domain with keys."""
    try:
        return dkim_domains(config, domain, _now(), source=registry_source(config))
    except DomainError as e:
        raise _CommandError(1, [f"rail: {e}"]) from None


def _print_dkim_records(config: Config, store: KeyStore, domains: Sequence[str]) -> None:
    pending_since = oldest_pending(config)
    for domain in domains:
        for key in store.published(domain, pending_since):
            print(zone_line(domain, key))


def _with_dkim_keys(config: Config, work: Callable[[], T]) -> T:
    """``work()``, which reads or changes the DKIM keys under ``data_dir/dkim``; with the
    shared database, on a copy of its keys, stored back (and the nodes told) after."""
    source = registry_source(config)
    if not isinstance(source, SharedSource):
        return work()
    try:
        return synced(source, config.data_dir, work, paths=("dkim/",), now=_now().timestamp())
    except MirrorError as e:
        raise _CommandError(1, [f"rail: {e}"]) from None


def _cmd_dkim_show(args: argparse.Namespace) -> int:
    config = _config(args.config)

    def show() -> None:
        store, domains = _dkim_domains(config, args.domain)
        store.ensure(domains, _now().timestamp())
        _print_dkim_records(config, store, domains)

    try:
        _with_dkim_keys(config, show)
    except (DKIMKeyError, StoreUnavailableError) as e:
        raise _CommandError(1, [f"rail: {e}"]) from None
    return 0


def _cmd_dkim_rotate(args: argparse.Namespace) -> int:
    config = _config(args.config)

    def rotate() -> Rotated:
        rotated = rotate_domain(config, args.domain, _now(), source=registry_source(config))
        _print_dkim_records(config, KeyStore.open(config.data_dir / "dkim"), [rotated.domain])
        return rotated

    try:
        rotated = _with_dkim_keys(config, rotate)
        domain, generation = rotated.domain, rotated.generation
    except (DomainError, DKIMKeyError, StoreUnavailableError) as e:
        raise _CommandError(1, [f"rail: {e}"]) from None
    then = (
        "every node signs with the new keys from now on (notified)"
        if config.storage.backend == "postgresql"
        else "send SIGHUP to the running server: it signs with the new keys from then on"
    )
    print(
        f"; {domain}: new selectors {generation.ed25519_selector} and"
        f" {generation.rsa_selector}. Publish the records above, then {then}."
    )
    return 0


def _cmd_dns_records(args: argparse.Namespace) -> int:
    from rail.dns.cli import DNSCommandError, records_text

    config = _config(args.config)
    try:
        sys.stdout.write(records_text(config, args.domain))
    except (DNSCommandError, DKIMKeyError, StoreUnavailableError) as e:
        raise _CommandError(1, [f"rail: {e}"]) from None
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from rail.doctor.cli import parse_resolver, run_doctor
    from rail.doctor.inputs import DoctorError

    config = _config(args.config)
    try:
        resolver = None if args.resolver is None else parse_resolver(args.resolver)
    except ValueError as e:
        raise _CommandError(2, [f"rail doctor: --resolver: {e}"]) from None
    try:
        return run_doctor(
            config, sys.stdout, domain=args.domain, resolver=resolver, as_json=args.json
        )
    except (DoctorError, DKIMKeyError, StoreUnavailableError) as e:
        raise _CommandError(1, [f"rail: {e}"]) from None


def _cmd_tac_path(args: argparse.Namespace) -> int:
    from rail.prodcli import tac_path_command

    return tac_path_command(args)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    default_config = os.environ.get("RAIL_CONFIG", DEFAULT_CONFIG)
    parser = _Parser(prog="rail", description="Operate a Rail mail relay.")
    parser.add_argument("--version", action="version", version=f"rail {rail_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            default=default_config,
            help=f"configuration file (default: $RAIL_CONFIG or {DEFAULT_CONFIG})",
        )

    p = sub.add_parser("init", help="create a development set-up or a production config")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dev", metavar="DIR", dest="directory", help="development set-up")
    mode.add_argument("--production", action="store_true", help="write a production config")
    p.add_argument("--hostname", help="default: rail.test (--dev), this machine's FQDN")
    p.add_argument("--https-port", type=_port, help="--dev only (default 8443)")
    p.add_argument("--submission-port", type=_port, help="--dev only (default 8465)")
    p.add_argument("--inbound-port", type=_port, help="--dev only (default 8025)")
    p.add_argument("--http-port", type=_port, help="--dev only (default 8080)")
    p.add_argument("--dns-port", type=_port, help="--dev only (default 8053)")
    p.add_argument("--data-dir", help="--production: default /var/lib/rail")
    p.add_argument("--acme-email", help="--production: contact for Let's Encrypt")
    p.add_argument("--domain", action="append", help="--production: mail domain (repeatable)")
    p.add_argument("--force", action="store_true", help="--production: replace the config")
    p.add_argument(
        "--config",
        default=default_config,
        help=f"--production: where to write it (default: $RAIL_CONFIG or {DEFAULT_CONFIG})",
    )
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("config-check", help="validate a configuration file")
    with_config(p)
    p.set_defaults(func=_cmd_config_check)

    certs = sub.add_parser("certs", help="client certificates").add_subparsers(
        dest="certs_command", metavar="COMMAND", parser_class=_Parser
    )
    certs.required = True

    p = certs.add_parser("issue", help="issue a client certificate")
    with_config(p)
    p.add_argument("--name", required=True, help="client name (certificate CN)")
    p.add_argument("--email", action="append", help="allowed sender address (repeatable)")
    p.add_argument("--webhook", help="https URL for inbound mail")
    p.add_argument(
        "--admin",
        action="store_true",
        help="an admin certificate: admin API and `rail queue`, no mail (no --email)",
    )
    p.add_argument("--key-type", choices=KEY_TYPES, help="default from pki.key_type")
    p.add_argument("--days", type=int, help="validity in days (default pki.client_validity)")
    p.add_argument("--out", default=".", help="directory for NAME.crt and NAME.key")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument(
        "--allow-shared-address",
        action="store_true",
        help="issue even if another client's valid certificate holds an --email address",
    )
    add_issue_options(p)
    p.add_argument(
        "--p12",
        action="store_true",
        help="also write NAME.p12 (PKCS#12, password-protected) to import into a browser",
    )
    p.add_argument(
        "--p12-password-file",
        type=Path,
        metavar="FILE",
        help="the .p12 password from FILE's first line instead of a prompt",
    )
    p.set_defaults(func=_cmd_issue)

    p = certs.add_parser("list", help="list issued certificates")
    with_config(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_list)

    p = certs.add_parser(
        "revoke", help="revoke by name or serial (a running Rail applies it within a second)"
    )
    with_config(p)
    p.add_argument("certificate", metavar="NAME|SERIAL")
    p.set_defaults(func=_cmd_revoke)

    p = certs.add_parser("inspect", help="show what Rail makes of a certificate file")
    with_config(p)
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=_cmd_inspect)

    add_webhook_secret_command(certs, with_config, _Parser)

    add_queue_commands(sub, with_config, _Parser)
    add_client_commands(sub, with_config, _Parser)
    add_suppression_commands(sub, with_config, _Parser)

    dkim = sub.add_parser("dkim", help="DKIM signing keys").add_subparsers(
        dest="dkim_command", metavar="COMMAND", parser_class=_Parser
    )
    dkim.required = True

    p = dkim.add_parser("show", help="print the DKIM records to publish (creates missing keys)")
    with_config(p)
    p.add_argument("domain", metavar="DOMAIN", nargs="?", help="default: every local domain")
    p.set_defaults(func=_cmd_dkim_show)

    p = dkim.add_parser("rotate", help="add new DKIM keys for a domain")
    with_config(p)
    p.add_argument("domain", metavar="DOMAIN")
    p.set_defaults(func=_cmd_dkim_rotate)

    p = sub.add_parser("tac-path", help='where rail.tac is: twistd -ny "$(rail tac-path)"')
    p.set_defaults(func=_cmd_tac_path)

    dns = sub.add_parser("dns", help="authoritative DNS").add_subparsers(
        dest="dns_command", metavar="COMMAND", parser_class=_Parser
    )
    dns.required = True

    p = dns.add_parser("records", help="print the zones Rail serves as zone files")
    with_config(p)
    p.add_argument("--domain", metavar="DOMAIN", help="default: every local domain")
    p.set_defaults(func=_cmd_dns_records)

    p = sub.add_parser("doctor", help="check public DNS, certificate and ports against Rail's")
    with_config(p)
    p.add_argument("--domain", metavar="DOMAIN", help="default: every local domain")
    p.add_argument("--resolver", metavar="IP[:PORT]", help="default: the configured resolvers")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_doctor)
    return parser


def run(argv: Sequence[str]) -> int:
    """Run the CLI and return the exit code (tests call this)."""
    try:
        args = _parser().parse_args(argv)
        code: int = args.func(args)
        return code
    except _CommandError as e:
        for line in e.lines:
            sys.stderr.write(f"{line}\n")
        return e.code
    except ConfigError as e:
        for problem in e.problems:
            sys.stderr.write(f"rail: {problem}\n")
        return 2
    except OperationError as e:
        for line in e.problems:
            sys.stderr.write(f"rail: {line}\n")
        return 2
    except AddressConflictError as e:
        for line in e.problems:
            sys.stderr.write(f"rail: {line}\n")
        return 1
    except (PKIError, RegistryError) as e:
        sys.stderr.write(f"rail: {e}\n")
        return 1
    except sqlite3.Error as e:
        sys.stderr.write(f"rail: registry: {e}\n")
        return 1
    except OSError as e:
        where = e.filename if e.filename else "rail"
        sys.stderr.write(f"rail: {where}: {e.strerror or e}\n")
        return 1


def main() -> NoReturn:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":  # python -m rail.cli, as well as the rail script
    main()

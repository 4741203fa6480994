"""``rail queue``: list and act on the running server's queue through its admin API.

The CLI never opens the queue database: every command is one HTTPS request to the
server's ``/api/v1/admin/...`` with an admin certificate, so the server's single writer
applies it (no race with delivery) and the command works the same against a remote Rail.

The server is found from the configuration (``listen.https``; a wildcard interface is
reached on loopback) unless ``--url`` says otherwise. Its certificate is verified against
the system's trust store and Rail's own CA (``data_dir/ca/ca.crt``, which issues the
development and pre-ACME server certificate), for the name ``hostname``. The admin
certificate is ``--cert``/``--key``, or else a local one kept in ``data_dir/cli/``
(``rail-cli.crt``, and ``rail-cli.key`` with mode 0600), issued and recorded as an admin
certificate named ``rail-cli`` the first time it is needed and again once it expires.

Exit codes: 0 done; 1 the server refused or failed (unknown id, nothing to act on,
unreachable, 5xx); 2 usage (bad arguments, or a 400 from the server).
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from cryptography import x509

from rail.config import Config, ConfigError, load_config
from rail.pki.files import PKIError, ca_cert_path
from rail.pki.issue import ClientRequest
from rail.pki.operations import OperationError, ensure_directory, issue_client
from rail.shared.registry import registry_source

__all__ = [
    "LOCAL_ADMIN",
    "AdminAPI",
    "AdminAPIError",
    "add_queue_commands",
    "admin_api_arguments",
    "admin_command",
    "local_admin_certificate",
]

LOCAL_ADMIN = "rail-cli"
"""The name of the admin certificate the CLI issues for itself."""

_TIMEOUT = 30.0
_PAGE = 500


class _FailedError(Exception):
    def __init__(self, code: int, line: str) -> None:
        super().__init__(line)
        self.code = code
        self.line = line


def local_admin_certificate(config: Config, now: datetime) -> tuple[Path, Path]:
    """``data_dir/cli/rail-cli.crt`` and ``.key``, issued (and recorded as an admin
    certificate) if missing or expired."""
    directory = config.data_dir / "cli"
    cert, key = directory / f"{LOCAL_ADMIN}.crt", directory / f"{LOCAL_ADMIN}.key"
    if cert.exists() and key.exists():
        try:
            not_after = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc
        except ValueError:
            not_after = now
        if not_after > now:
            return cert, key
    ensure_directory(directory)
    request = ClientRequest(
        name=LOCAL_ADMIN,
        emails=(),
        webhook=None,
        key_type=config.pki.key_type,
        validity=timedelta(seconds=config.pki.client_validity),
        admin=True,
    )
    issued = issue_client(
        config, request, directory, now, force=True, source=registry_source(config)
    )
    return issued.certificate_path, issued.key_path


class _Connection(http.client.HTTPSConnection):
    """An HTTPS connection to ``address`` whose certificate is checked for ``name``."""

    def __init__(self, address: str, port: int, name: str, context: ssl.SSLContext) -> None:
        super().__init__(address, port, timeout=_TIMEOUT, context=context)
        self._name = name
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self._name)


class _Client:
    def __init__(self, args: argparse.Namespace) -> None:
        try:
            config = load_config(args.config)
        except ConfigError as e:
            raise _FailedError(2, "; ".join(str(p) for p in e.problems)) from None
        self.config = config
        if args.url is not None:
            parts = urlsplit(args.url)
            if parts.scheme != "https" or parts.hostname is None:
                raise _FailedError(2, f"--url {args.url!r}: an https://host:port URL")
            self.address, self.port = parts.hostname, parts.port or 443
        else:
            listen = config.listen.https
            if listen is None:
                raise _FailedError(2, "listen.https is disabled: pass --url")
            interface = listen.interface
            wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 (reached on loopback)
            self.address, self.port = wildcard.get(interface, interface), listen.port
        context = ssl.create_default_context()
        ca = Path(args.ca) if args.ca else ca_cert_path(config.data_dir)
        if ca.exists():
            context.load_verify_locations(cafile=str(ca))
        if args.cert or args.key:
            if not (args.cert and args.key):
                raise _FailedError(2, "--cert and --key go together")
            cert, key = Path(args.cert), Path(args.key)
        else:
            try:
                cert, key = local_admin_certificate(config, datetime.now(UTC))
            except OperationError as e:
                raise _FailedError(1, "; ".join(e.problems)) from None
            except (PKIError, OSError) as e:
                raise _FailedError(1, f"cannot issue the local admin certificate: {e}") from None
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as e:
            raise _FailedError(1, f"{cert}: cannot load the admin certificate ({e})") from None
        self.context = context

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        connection = _Connection(self.address, self.port, self.config.hostname, self.context)
        where = f"https://{self.address}:{self.port}"
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise _FailedError(1, f"{where}: {e}") from None
        finally:
            connection.close()
        try:
            document = json.loads(raw)
        except ValueError:
            raise _FailedError(1, f"{where}{path}: {response.status}, not JSON") from None
        if response.status >= 400:
            error = document.get("error", {}) if isinstance(document, dict) else {}
            code = 2 if response.status == 400 else 1
            raise _FailedError(
                code,
                f"{response.status} {error.get('code', '?')}: {error.get('message', '')}",
            )
        return document


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])), row[-1]])
        for row in rows
    )


def _cmd_list(client: _Client, args: argparse.Namespace) -> int:
    params = {
        name: value
        for name, value in (
            ("status", args.status),
            ("client", args.client),
            ("domain", args.domain),
            ("recipient", args.recipient),
            ("older_than", args.older_than),
            ("sender", args.sender),
            ("tag", args.tag),
            ("request_id", args.request_id),
        )
        if value is not None
    }
    for pair in args.metadata or ():
        key, equals, value = pair.partition("=")
        if not equals or not key:
            sys.stderr.write(f"rail: --metadata {pair!r}: expected KEY=VALUE\n")
            return 2
        params[f"metadata[{key}]"] = value
    messages: list[dict[str, Any]] = []
    cursor = args.cursor
    while len(messages) < args.limit:
        query = dict(params, limit=str(min(_PAGE, args.limit - len(messages))))
        if cursor is not None:
            query["cursor"] = cursor
        page = client.call("GET", "/api/v1/admin/messages?" + urlencode(query))
        messages.extend(page["messages"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    if args.json:
        print(json.dumps({"messages": messages, "next_cursor": cursor}, indent=2))
        return 0
    rows: list[tuple[str, ...]] = [("ID", "RECEIVED", "STATUS", "CLIENT", "FROM", "RECIPIENTS")]
    rows += [
        (
            m["id"],
            m["received_at"],
            m["status"],
            m["client"],
            m["from"] or "<>",
            ",".join(m["recipients"]),
        )
        for m in messages
    ]
    print(_table(rows))
    if cursor is not None:
        sys.stderr.write(f"rail: more messages: rail queue list --cursor {cursor}\n")
    return 0


def _cmd_show(client: _Client, args: argparse.Namespace) -> int:
    document = client.call("GET", f"/api/v1/admin/messages/{quote(args.id, safe='')}")
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    lines = [
        f"id        {document['id']}",
        f"status    {document['status']}" + (" (held)" if document["held"] else ""),
        f"client    {document['client']}",
        f"from      {document['from'] or '<>'}",
        f"channel   {document['channel']}",
        f"size      {document['size']}",
        f"received  {document['received_at']}",
    ]
    if document.get("reason"):
        lines.append(f"reason    {document['reason']}")
    lines.append("recipients")
    for r in document["recipients"]:
        lines.append(f"  {r['address']}  {r['status']}  attempts={r['attempts']}")
        for a in r.get("history", []):
            mta = f" ({a['remote_mta']})" if a.get("remote_mta") else ""
            lines.append(f"    {a['at']}  {a['status']}{mta}  {a['reply'] or ''}")
        if r.get("last_reply"):
            lines.append(f"    last reply  {r['last_reply']}")
        if r.get("remote_mta"):
            lines.append(f"    remote MTA  {r['remote_mta']}")
        if r.get("next_attempt_at"):
            lines.append(f"    next try    {r['next_attempt_at']}")
        lines.append(f"    updated     {r['updated_at']}")
    if document["actions"]:
        lines.append("actions")
        for a in document["actions"]:
            reason = f": {a['reason']}" if a.get("reason") else ""
            lines.append(f"  {a['at']}  {a['action']} by {a['by']}{reason}")
    lines.append("headers")
    lines += [f"  {name}: {value}" for name, value in document["headers"]]
    print("\n".join(lines))
    return 0


def _action(action: str) -> Callable[[_Client, argparse.Namespace], int]:
    def command(client: _Client, args: argparse.Namespace) -> int:
        reason = getattr(args, "reason", None)
        body = {"reason": reason} if reason is not None else {}
        path = f"/api/v1/admin/messages/{quote(args.id, safe='')}/{action}"
        document = client.call("POST", path, body)
        if args.json:
            print(json.dumps(document, indent=2))
        else:
            print(f"{args.id}: {action} done")
        return 0

    return command


def _cmd_retry(client: _Client, args: argparse.Namespace) -> int:
    given = [args.id is not None, args.all, args.domain is not None]
    if sum(given) != 1:
        raise _FailedError(2, "rail queue retry: give one of ID, --all or --domain D")
    if args.id is not None:
        path = f"/api/v1/admin/messages/{quote(args.id, safe='')}/retry"
        document = client.call("POST", path, {})
    else:
        body = {"all": True} if args.all else {"domain": args.domain}
        document = client.call("POST", "/api/v1/admin/retry", body)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(f"{document['retried']} recipient(s) due now")
    return 0


def admin_command(
    group: str, command: Callable[[_Client, argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """``command`` run with a client of the admin API; a refusal is one line on stderr,
    ``rail GROUP SUBCOMMAND: ...``, and its exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(_Client(args), args)
        except _FailedError as e:
            sys.stderr.write(f"rail: {group} {getattr(args, group + '_command')}: {e.line}\n")
            return e.code

    return run


def admin_api_arguments(
    p: argparse.ArgumentParser, with_config: Callable[[argparse.ArgumentParser], None]
) -> None:
    """The options of every command that talks to the running server's admin API."""
    with_config(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.add_argument("--url", help="the server's https://host:port (default: listen.https)")
    p.add_argument("--cert", help="admin certificate (default: data_dir/cli/rail-cli.crt)")
    p.add_argument("--key", help="its private key")
    p.add_argument("--ca", help="CA bundle for the server (default: data_dir/ca/ca.crt)")


def _run(command: Callable[[_Client, argparse.Namespace], int]) -> Callable[..., int]:
    return admin_command("queue", command)


def add_queue_commands(
    sub: Any, with_config: Callable[[argparse.ArgumentParser], None], parser_class: type
) -> None:
    """Register ``rail queue ...`` on the top-level subparsers ``sub``."""
    queue = sub.add_parser("queue", help="the running server's queue (admin API)").add_subparsers(
        dest="queue_command", metavar="COMMAND", parser_class=parser_class
    )
    queue.required = True

    def common(p: argparse.ArgumentParser) -> None:
        admin_api_arguments(p, with_config)

    p = queue.add_parser("list", help="list messages, newest first")
    common(p)
    p.add_argument(
        "--status", help="queued, deferred, held, sent, bounced, failed, deleted or suppressed"
    )
    p.add_argument("--client", help="only this client's messages")
    p.add_argument("--domain", help="messages with a recipient in this domain")
    p.add_argument("--recipient", help="messages to this address")
    p.add_argument("--older-than", metavar="DURATION", help='received longer ago, e.g. "2h"')
    p.add_argument("--sender", help="messages from this envelope sender")
    p.add_argument("--tag", help="messages sent with this tag")
    p.add_argument("--request-id", help="the message sent with this request_id")
    p.add_argument(
        "--metadata",
        action="append",
        metavar="KEY=VALUE",
        help="messages whose metadata has KEY equal to VALUE (repeatable: all must match)",
    )
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--cursor", help="go on from a previous listing")
    p.set_defaults(func=_run(_cmd_list))

    p = queue.add_parser("show", help="a message's envelope, recipients, history and headers")
    common(p)
    p.add_argument("id")
    p.set_defaults(func=_run(_cmd_show))

    p = queue.add_parser("retry", help="make deferred mail due now: ID, --all or --domain D")
    common(p)
    p.add_argument("id", nargs="?")
    p.add_argument("--all", action="store_true")
    p.add_argument("--domain")
    p.set_defaults(func=_run(_cmd_retry))

    for action, text, reason in (
        ("hold", "keep a message from delivery until released", "optional"),
        ("release", "lift a hold; the message is due at once", None),
        ("delete", "stop delivering a message (recipients become deleted, no DSN)", "required"),
        ("bounce", "give up on a message and send its DSN to the sender", "optional"),
    ):
        p = queue.add_parser(action, help=text)
        common(p)
        p.add_argument("id")
        if reason is not None:
            p.add_argument("--reason", required=reason == "required", help="kept with the message")
        p.set_defaults(func=_run(_action(action)))


# For the other admin-API commands (``rail suppressions``): the same connection, server
# look-up, admin certificate and exit codes.
AdminAPI = _Client
AdminAPIError = _FailedError

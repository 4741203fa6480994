"""``rail doctor``: the checks of :mod:`rail.doctor.run` as a table (or JSON), exit 1 on
any FAIL.

The inputs are read before the reactor starts; the questions run under
:func:`twisted.internet.task.react`. :func:`doctor` is the same run on a given reactor,
for tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from twisted.internet import task
from twisted.internet.defer import Deferred

from rail.config import Config
from rail.config.readers import Cursor, InvalidError, nameserver
from rail.delivery.resolve import make_resolver
from rail.doctor.checks import FAIL, Check
from rail.doctor.inputs import Inputs, load_inputs
from rail.doctor.probe import DNS_TIMEOUT, Overrides, Probe
from rail.doctor.run import diagnose, report_json, resolver_servers

__all__ = ["doctor", "format_table", "parse_resolver", "run_doctor"]

_WIDEST = 60


def parse_resolver(text: str) -> tuple[str, int]:
    """``--resolver``: ``IP``, ``IP:PORT`` or ``[IPv6]:PORT``; ValueError if not."""
    try:
        return nameserver(text, Cursor("--resolver", Path("."), []))
    except InvalidError as e:
        raise ValueError(str(e)) from None


def _cell(text: str) -> str:
    return text if len(text) <= _WIDEST else text[: _WIDEST - 3] + "..."


def format_table(checks: Sequence[Check]) -> str:
    """One line per check: STATUS, CHECK, DOMAIN, EXPECTED, FOUND (the last in full)."""
    header = ("STATUS", "CHECK", "DOMAIN", "EXPECTED", "FOUND")
    rows = [header] + [(c.status, c.check, c.domain, _cell(c.expected), c.found) for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


async def doctor(
    inputs: Inputs,
    reactor: Any,
    servers: Sequence[tuple[str, int]] | None,
    out: TextIO,
    *,
    as_json: bool = False,
    overrides: Overrides | None = None,
) -> int:
    """Run every check on ``reactor``, asking ``servers`` (None: the system's resolver),
    print the report to ``out`` and return the exit code: 1 if anything FAILed."""
    resolver = make_resolver(servers, reactor, timeout=DNS_TIMEOUT)
    probe = Probe(reactor, resolver, overrides)
    try:
        checks = await diagnose(inputs, probe)
    finally:
        probe.close()
    if as_json:
        out.write(json.dumps(report_json(checks), indent=2) + "\n")
    else:
        out.write(format_table(checks))
    return 1 if any(c.status == FAIL for c in checks) else 0


def run_doctor(
    config: Config,
    out: TextIO,
    *,
    domain: str | None = None,
    resolver: tuple[str, int] | None = None,
    as_json: bool = False,
) -> int:
    """The command: read the inputs, then run :func:`doctor` under ``react`` on the
    global reactor. Raises :class:`~rail.doctor.inputs.DoctorError` before starting
    the reactor when ``domain`` is not local."""
    inputs = load_inputs(config, time.time(), domain)
    servers = resolver_servers(config, resolver)

    def main(reactor: Any) -> Any:
        async def run() -> None:
            code = await doctor(inputs, reactor, servers, out, as_json=as_json)
            if code:
                raise SystemExit(code)

        return Deferred.fromCoroutine(run())

    try:
        task.react(main)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0

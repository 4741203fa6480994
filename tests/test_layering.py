"""Keeps the three layers apart by parsing imports (STYLE.md: pure, glue, wiring)."""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import rail

_ROOT = Path(rail.__file__).parent

# Modules that decide: no reactor, sockets or Twisted networking.
_PURE = [
    "config",
    "connections.py",
    "timefmt.py",
    "pki/keys.py",
    "pki/ca.py",
    "pki/issue.py",
    "pki/inspect.py",
    "pki/crl.py",
    "pki/names.py",
    "pki/clientauth.py",
    "pki/ownership.py",
    "policy",
    "events",
    "mail",
    "smtp/commands.py",
    "smtp/framing.py",
    "smtp/session.py",
    "smtp/budget.py",
    "malloc.py",
    "store/model.py",
    "forward/srs.py",
    "forward/secret.py",
    "forward/clients.py",
    "forward/loops.py",
    "forward/limits.py",
    "forward/copies.py",
    "forward/fastrsa.py",
    "store/bouncereports.py",
    "bounces/verp.py",
    "bounces/reports.py",
    "store/ids.py",
    "store/events.py",
    "store/writer.py",
    "store/schema.py",
    "store/inspect.py",
    "store/deliveries.py",
    "store/integrity.py",
    "store/purge.py",
    "store/reader.py",
    "store/ops.py",
    "store/accept.py",
    "store/status.py",
    "store/backend.py",
    "store/db.py",
    "store/pgschema.py",
    "store/sharedusage.py",
    "dkim/canonical.py",
    "dkim/sign.py",
    "dkim/generations.py",
    "dkim/records.py",
    "dkim/names.py",
    "dkim/domains.py",
    "dkim/keys.py",
    "delivery/outcome.py",
    "delivery/dotstuff.py",
    "delivery/replies.py",
    "delivery/schedule.py",
    "delivery/mx.py",
    "delivery/dane.py",
    "delivery/publicaddress.py",
    "delivery/stspolicy.py",
    "delivery/stscache.py",
    "delivery/smtpauth.py",
    "delivery/tlspolicy.py",
    "delivery/tlsreport.py",
    "delivery/dsn.py",
    "delivery/decide.py",
    "delivery/bounces.py",
    "delivery/stats.py",
    "delivery/tally.py",
    "delivery/log.py",
    "webhooks/log.py",
    "logkv.py",
    "logjson.py",
    "store/inbound.py",
    "inbound/model.py",
    "inbound/recipients.py",
    "inbound/policy.py",
    "inbound/answers.py",
    "inbound/spfcheck.py",
    "inbound/dkimverify.py",
    "inbound/dmarc.py",
    "inbound/results.py",
    "webhooks/key.py",
    "webhooks/signing.py",
    "webhooks/payload.py",
    "webhooks/response.py",
    "webhooks/outcome.py",
    "webhooks/addresses.py",
    "acme/challenges.py",
    "acme/decide.py",
    "dns/records.py",
    "dns/zone.py",
    "dns/serial.py",
    "dns/mtasts.py",
    "dns/lookup.py",
    "dns/ratelimit.py",
    "dns/zonefile.py",
    "dns/sources.py",
    "dns/cli.py",
    "workers/plan.py",
    "workers/restart.py",
    "workers/metricsmerge.py",
    "diskfull.py",
    "store/reserve.py",
    "doctor/checks.py",
    "doctor/certificate.py",
    "doctor/expected.py",
    "doctor/inputs.py",
]
_TWISTED_IO = ("twisted.internet", "twisted.web", "twisted.mail", "twisted.names", "treq")
# Only the wiring may import the global reactor.
_WIRING = {"tap.py"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _files(entry: str) -> list[Path]:
    target = _ROOT / entry
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


class LayeringTests(SynchronousTestCase):
    def test_pure_modules_import_no_twisted_io(self) -> None:
        """Pure modules never import Twisted networking, web, mail, names or treq."""
        offenders = [
            f"{path.relative_to(_ROOT)}: {name}"
            for entry in _PURE
            for path in _files(entry)
            for name in _imports(path)
            if name.startswith(_TWISTED_IO)
        ]
        self.assertEqual(offenders, [])

    def test_global_reactor_only_in_wiring(self) -> None:
        """Only rail/tap.py imports the global reactor; everything else takes one."""
        offenders = [
            str(path.relative_to(_ROOT))
            for path in _ROOT.rglob("*.py")
            if path.name not in _WIRING and "twisted.internet.reactor" in _imports(path)
        ]
        self.assertEqual(offenders, [])

    def test_package_init_files_hold_no_logic(self) -> None:
        """__init__.py files contain only a docstring and imports."""
        for path in _ROOT.rglob("__init__.py"):
            tree = ast.parse(path.read_text())
            for node in tree.body:
                self.assertIsInstance(
                    node, (ast.Expr, ast.Import, ast.ImportFrom, ast.Assign), str(path)
                )


_ARCHITECTURE = _ROOT.parent / "docs" / "architecture.md"


def _allowed_imports() -> dict[str, set[str] | None]:
    """docs/architecture.md's package table: package -> the Rail packages it may import
    (``None`` for "any")."""
    table: dict[str, set[str] | None] = {}
    for line in _ARCHITECTURE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        name = cells[0].strip("`")
        allowed = cells[2]
        if allowed == "any":
            table[name] = None
        else:
            table[name] = {part.strip().strip("`") for part in allowed.split(",")} - {"—"}
    return table


def _package_imports() -> dict[str, set[str]]:
    """Rail package -> the other Rail packages its modules import."""
    graph: dict[str, set[str]] = {}
    for path in _ROOT.rglob("*.py"):
        parts = path.relative_to(_ROOT).parts
        if parts == ("__init__.py",):
            continue
        package = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        targets = graph.setdefault(package, set())
        for name in _imports(path):
            if name.startswith("rail."):
                target = name.split(".")[1]
                if target != package:
                    targets.add(target)
    return graph


class ArchitectureTests(SynchronousTestCase):
    def test_every_package_is_in_the_architecture_table(self) -> None:
        """docs/architecture.md names every package and top-level module of rail/."""
        self.assertEqual(sorted(set(_package_imports()) - set(_allowed_imports())), [])

    def test_imports_follow_the_architecture_table(self) -> None:
        """No package imports a Rail package its row in docs/architecture.md does not allow."""
        allowed = _allowed_imports()
        offenders = [
            f"{package} -> {target}"
            for package, targets in sorted(_package_imports().items())
            for target in sorted(targets)
            if allowed.get(package) is not None and target not in (allowed[package] or set())
        ]
        self.assertEqual(offenders, [])

    def test_package_imports_have_no_cycles(self) -> None:
        """The package import graph is acyclic (wiring modules aside, which import anything)."""
        graph = _package_imports()
        wiring = {name for name, allowed in _allowed_imports().items() if allowed is None}
        state: dict[str, int] = {}
        cycles: list[str] = []

        def visit(node: str, path: list[str]) -> None:
            state[node] = 1
            for target in sorted(graph.get(node, ())):
                if target in wiring:
                    continue
                if state.get(target) == 1:
                    cycles.append(" -> ".join([*path[path.index(target) :], target]))
                elif target not in state:
                    visit(target, [*path, target])
            state[node] = 2

        for node in sorted(graph):
            if node not in wiring and node not in state:
                visit(node, [node])
        self.assertEqual(cycles, [])


class PackagingTests(SynchronousTestCase):
    def test_every_package_is_listed_in_setup_cfg(self) -> None:
        """setup.cfg lists packages by hand: one left out is missing from `pip install .`
        (the editable install used by the tests would not notice)."""
        import configparser

        parser = configparser.ConfigParser()
        parser.read(_ROOT.parent / "setup.cfg")
        listed = set(parser["options"]["packages"].split())
        packages = {
            ".".join(path.parent.relative_to(_ROOT.parent).parts)
            for path in _ROOT.rglob("__init__.py")
        }
        self.assertEqual(sorted(packages - listed), [])

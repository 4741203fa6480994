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
    "pki/keys.py",
    "pki/ca.py",
    "pki/issue.py",
    "pki/inspect.py",
    "pki/crl.py",
    "pki/names.py",
    "pki/clientauth.py",
    "policy",
    "mail",
    "smtp/commands.py",
    "smtp/framing.py",
    "smtp/session.py",
    "smtp/budget.py",
    "malloc.py",
    "store/model.py",
    "store/ids.py",
    "store/writer.py",
    "store/schema.py",
    "store/inspect.py",
    "store/deliveries.py",
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
    "delivery/dsn.py",
    "delivery/decide.py",
    "delivery/bounces.py",
    "delivery/stats.py",
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

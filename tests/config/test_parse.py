"""Tests for ``rail.config.parse``: strict reading of a config document into ``Config``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from rail.config import Config, ConfigError, Problem, parse_config
from rail.config.listen import ListenSpec
from rail.config.readers import boolean, section
from rail.config.schema import PKI, TLS, Limits, Listen, Shutdown, Storage, Webhooks

BASE = Path("/etc/rail")
TLS_CHOICE = (
    "set either self_signed: true (Rail issues its own certificate, for development),"
    " both cert_file and key_file, or acme"
)


def _minimal(**changes: Any) -> dict[str, Any]:
    """The smallest valid document, with top-level keys added or replaced."""
    data: dict[str, Any] = {"hostname": "mail.example.com", "tls": {"self_signed": True}}
    data.update(changes)
    return data


def _problems(data: object) -> list[str]:
    """Every problem ``parse_config`` reports for ``data``, as ``path: message`` lines."""
    try:
        parse_config(data, BASE)
    except ConfigError as e:
        return [str(problem) for problem in e.problems]
    raise AssertionError(f"{data!r} was accepted")


class DefaultsTests(SynchronousTestCase):
    def test_minimal(self) -> None:
        """A document with only hostname and tls gets every documented default."""
        self.assertEqual(
            parse_config(_minimal(), BASE),
            Config(
                hostname="mail.example.com",
                tls=TLS(self_signed=True),
                data_dir=Path("/var/lib/rail"),
                local_domains=(),
                listen=Listen(
                    https=ListenSpec(kind="tcp", port=443, interface="127.0.0.1", backlog=511),
                    submission=ListenSpec(kind="tcp", port=465, interface="127.0.0.1", backlog=511),
                ),
                pki=PKI(key_type="ed25519", client_validity=365 * 86400.0),
                webhooks=Webhooks(allow_http_loopback=False),
                limits=Limits(
                    http_body_size=36 * 1024 * 1024,
                    http_idle_timeout=60.0,
                    message_size=25 * 1024 * 1024,
                    max_recipients=100,
                    smtp_idle_timeout=300.0,
                    smtp_transaction_timeout=600.0,
                    smtp_bad_commands=10,
                ),
                storage=Storage(
                    max_queued=1_000_000,
                    min_free_space=512 * 1024 * 1024,
                    reserve=16 * 1024 * 1024,
                ),
                shutdown=Shutdown(drain_delay=2.0),
            ),
        )

    def test_empty_sections(self) -> None:
        """An empty mapping for a section means all of its defaults."""
        data = _minimal(listen={}, pki={}, webhooks={}, limits={}, shutdown={})
        self.assertEqual(parse_config(data, BASE), parse_config(_minimal(), BASE))

    def test_every_key(self) -> None:
        """Every key is read into its attribute, converted to its unit."""
        data = {
            "hostname": "Mail.Example.COM",
            "data_dir": "/srv/rail",
            "local_domains": ["example.com", "Example.ORG."],
            "listen": {"https": r"tcp6:8443:interface=\:\::backlog=100"},
            "tls": {"cert_file": "/etc/ssl/rail.pem", "key_file": "/etc/ssl/rail.key"},
            "pki": {"key_type": "rsa2048", "client_validity": "90d"},
            "webhooks": {"allow_http_loopback": True},
            "limits": {"http_body_size": "10MB", "http_idle_timeout": "5m"},
            "shutdown": {"drain_delay": "250ms"},
        }
        self.assertEqual(
            parse_config(data, BASE),
            Config(
                hostname="mail.example.com",
                tls=TLS(cert_file=Path("/etc/ssl/rail.pem"), key_file=Path("/etc/ssl/rail.key")),
                data_dir=Path("/srv/rail"),
                local_domains=("example.com", "example.org"),
                listen=Listen(
                    https=ListenSpec(kind="tcp6", port=8443, interface="::", backlog=100)
                ),
                pki=PKI(key_type="rsa2048", client_validity=90 * 86400.0),
                webhooks=Webhooks(allow_http_loopback=True),
                limits=Limits(http_body_size=10 * 1024 * 1024, http_idle_timeout=300.0),
                shutdown=Shutdown(drain_delay=0.25),
            ),
        )

    def test_storage_reserve(self) -> None:
        """``storage.reserve`` is a size from 0 (no reserve) to 1GB, 16MB by default."""
        self.assertEqual(parse_config(_minimal(), BASE).storage.reserve, 16 * 1024 * 1024)
        self.assertEqual(parse_config(_minimal(storage={"reserve": "0B"}), BASE).storage.reserve, 0)
        self.assertEqual(
            parse_config(_minimal(storage={"reserve": "64MB"}), BASE).storage.reserve,
            64 * 1024 * 1024,
        )
        self.assertEqual(
            _problems(_minimal(storage={"reserve": "2GB"})),
            ['storage.reserve: expected a size from "0B" to "1GB", got \'2GB\''],
        )

    def test_smtp_bounds(self) -> None:
        """The SMTP command deadline, idle-command limit and DATA memory budget are read
        with their units and bounds."""
        config = parse_config(
            _minimal(
                limits={
                    "smtp_command_timeout": "45s",
                    "smtp_idle_commands": 20,
                    "data_memory": "1GB",
                }
            ),
            BASE,
        )
        self.assertEqual(config.limits.smtp_command_timeout, 45.0)
        self.assertEqual(config.limits.smtp_idle_commands, 20)
        self.assertEqual(config.limits.data_memory, 1024**3)
        defaults = parse_config(_minimal(), BASE).limits
        self.assertEqual(
            (defaults.smtp_command_timeout, defaults.smtp_idle_commands, defaults.data_memory),
            (30.0, 100, 256 * 1024 * 1024),
        )
        for key, value in (
            ("smtp_command_timeout", "0s"),
            ("smtp_idle_commands", 0),
            ("data_memory", "100KB"),
        ):
            error = self.assertRaises(
                ConfigError, parse_config, _minimal(limits={key: value}), BASE
            )
            self.assertIn(f"limits.{key}: ", str(error))

    def test_data_memory_holds_the_largest_message(self) -> None:
        """limits.data_memory under 4 x message_size (a message is charged 4 times its
        size) is refused: the largest messages could never be accepted."""
        error = self.assertRaises(
            ConfigError,
            parse_config,
            _minimal(limits={"message_size": "100MB"}),
            BASE,
        )
        self.assertIn("limits: data_memory (268435456 bytes) must be at least 4 x", str(error))
        config = parse_config(
            _minimal(limits={"message_size": "100MB", "data_memory": "400MB"}), BASE
        )
        self.assertEqual(config.limits.data_memory, 400 * 1024 * 1024)

    def test_frozen(self) -> None:
        """The parsed config cannot be changed in place: it is shared by every service."""
        config = parse_config(_minimal(local_domains=["example.com"]), BASE)
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, config, "hostname", "x")
        self.assertIsInstance(config.local_domains, tuple)


class ProblemReportingTests(SynchronousTestCase):
    def test_three_problems_in_document_order(self) -> None:
        """An unknown key, a wrong type and a bad duration give exactly three problems, each
        at its path, in the order they appear in the document."""
        data = _minimal(
            pki={"client_validity": "5x"},
            listen={"htps": "tcp:443"},
            local_domains=3,
        )
        self.assertEqual(
            _problems(data),
            [
                'pki.client_validity: expected a duration like "15m" or "5d", got \'5x\'',
                "listen.htps: unknown key (did you mean 'https'?)",
                "local_domains: expected a list of strings, got int",
            ],
        )

    def test_problem_objects(self) -> None:
        """``ConfigError.problems`` holds ``Problem`` values whose ``str`` is one line."""
        try:
            parse_config(_minimal(colour="red"), BASE)
        except ConfigError as e:
            self.assertEqual(e.problems, (Problem("colour", "unknown key"),))
            self.assertEqual(str(e), "colour: unknown key")
        else:
            self.fail("unknown key accepted")

    def test_error_message_lists_all(self) -> None:
        """``str(ConfigError)`` is every problem, one per line."""
        error = ConfigError([Problem("a", "one"), Problem("b[1]", "two")])
        self.assertEqual(str(error), "a: one\nb[1]: two")

    def test_unknown_keys(self) -> None:
        """Unknown keys are errors at every level, with a suggestion when one is close
        (ignoring letter case) and none when nothing is."""
        data = _minimal(HOSTNAME="x", limits={"http_body_limit": "1MB"}, zzz=1)
        self.assertEqual(
            _problems(data),
            [
                "HOSTNAME: unknown key (did you mean 'hostname'?)",
                "limits.http_body_limit: unknown key (did you mean 'http_body_size'?)",
                "zzz: unknown key",
            ],
        )

    def test_not_a_mapping(self) -> None:
        """A document that is not a mapping is one problem at ``(config)``."""
        self.assertEqual(_problems(["hostname"]), ["(config): expected a mapping, got list"])
        self.assertEqual(_problems(None), ["(config): expected a mapping, got null"])
        self.assertEqual(_problems("x"), ["(config): expected a mapping, got string"])

    def test_section_not_a_mapping(self) -> None:
        """A section given as anything but a mapping is refused, null included: ``listen:
        null`` must not quietly mean "the default listeners"."""
        self.assertEqual(
            _problems(_minimal(listen=None, limits=[], pki="ed25519")),
            [
                "listen: expected a mapping, got null",
                "limits: expected a mapping, got list",
                "pki: expected a mapping, got string",
            ],
        )

    def test_non_string_key(self) -> None:
        """A key that YAML read as another type (``1:``, ``on:``) is refused."""
        self.assertEqual(
            _problems(_minimal(webhooks={True: 1})),
            ["webhooks: expected keys to be strings, got bool True"],
        )

    def test_required(self) -> None:
        """An empty document names both required keys."""
        self.assertEqual(
            _problems({}),
            ["hostname: required", f"tls: no server certificate is configured: {TLS_CHOICE}"],
        )

    def test_many_problems_at_once(self) -> None:
        """Problems in different sections and list items are all reported together."""
        data = {
            "hostname": "bad_host.example.com",
            "local_domains": ["ok.example", 7, "x"],
            "tls": {"self_signed": "yes"},
            "pki": {"key_type": "ecdsa", "client_validity": "12h"},
            "webhooks": {"allow_http_loopback": 1},
            "limits": {"http_body_size": 1.5, "http_idle_timeout": "2h"},
            "shutdown": {"drain_delay": 5},
        }
        self.assertEqual(
            _problems(data),
            [
                "hostname: expected a host name of dot-separated labels of letters, digits and"
                " hyphens, got 'bad_host.example.com'",
                "local_domains[1]: expected a string, got int",
                "local_domains[2]: expected a fully qualified domain name (with a dot), got 'x'",
                "tls.self_signed: expected true or false, got string",
                "pki.key_type: expected one of 'ed25519', 'ecdsa-p256', 'rsa2048', got 'ecdsa'"
                " (did you mean 'ecdsa-p256'?)",
                'pki.client_validity: expected a duration from "1d" to "3650d", got \'12h\'',
                "webhooks.allow_http_loopback: expected true or false, got int",
                'limits.http_body_size: expected a size like "50MB" or "64KB", got float',
                'limits.http_idle_timeout: expected a duration from "1s" to "1h", got \'2h\'',
                'shutdown.drain_delay: expected a duration like "15m" or "5d", got 5 (a number'
                ' without a unit is ambiguous: add a unit such as "s" or "m")',
            ],
        )


class HostnameTests(SynchronousTestCase):
    def test_normalized(self) -> None:
        """Host names are stored lowercase without a trailing dot; localhost is allowed."""
        table = {
            "mail.example.com": "mail.example.com",
            "MAIL.Example.Com": "mail.example.com",
            "mail.example.com.": "mail.example.com",
            "localhost": "localhost",
            "xn--bcher-kva.example": "xn--bcher-kva.example",
            "a-1.b2": "a-1.b2",
        }
        self.assertEqual(
            {text: parse_config(_minimal(hostname=text), BASE).hostname for text in table},
            table,
        )

    def test_invalid(self) -> None:
        """Names that are not LDH host names with a dot are refused, each with its reason."""
        labels = "expected a host name of dot-separated labels of letters, digits and hyphens"
        long_name = ".".join(["a" * 63] * 4)  # 255 characters
        table = {
            "mail": "expected a fully qualified host name (with a dot), got 'mail'",
            "": f"{labels}, got ''",
            "-mail.example.com": f"{labels}, got '-mail.example.com'",
            "mail-.example.com": f"{labels}, got 'mail-.example.com'",
            "mail..example.com": f"{labels}, got 'mail..example.com'",
            "mail.example.com..": f"{labels}, got 'mail.example.com..'",
            "mail example.com": f"{labels}, got 'mail example.com'",
            "a" * 64 + ".com": f"{labels}, got '{'a' * 64}.com'",
            long_name: f"{labels}, got '{long_name}'",
            "bücher.example": "expected an ASCII host name (write internationalized names in"
            " their xn-- form), got 'bücher.example'",
            "192.0.2.1": "expected a host name, not an IP address, got '192.0.2.1'",
        }
        self.assertEqual(
            {text: _problems(_minimal(hostname=text)) for text in table},
            {text: [f"hostname: {message}"] for text, message in table.items()},
        )

    def test_wrong_type(self) -> None:
        """A host name must be a string (YAML reads some bare words as other types)."""
        self.assertEqual(
            _problems(_minimal(hostname=123)), ["hostname: expected a string, got int"]
        )


class LocalDomainsTests(SynchronousTestCase):
    def test_lowercased_and_deduplicated(self) -> None:
        """Domains are lowercased and repeats dropped, keeping the first position."""
        data = _minimal(local_domains=["B.example", "a.example", "b.example.", "A.EXAMPLE"])
        self.assertEqual(parse_config(data, BASE).local_domains, ("b.example", "a.example"))

    def test_not_a_list(self) -> None:
        """A single domain given as a string is a type error, not a list of characters."""
        self.assertEqual(
            _problems(_minimal(local_domains="example.com")),
            ["local_domains: expected a list of strings, got string"],
        )


class PathTests(SynchronousTestCase):
    def test_relative_paths(self) -> None:
        """Relative data_dir, cert_file and key_file are taken relative to base_dir (the
        config file's directory); absolute paths are kept."""
        data = _minimal(
            data_dir="var/rail",
            tls={"cert_file": "certs/server.pem", "key_file": "/secret/server.key"},
        )
        config = parse_config(data, Path("/srv/conf"))
        self.assertEqual(config.data_dir, Path("/srv/conf/var/rail"))
        self.assertEqual(config.tls.cert_file, Path("/srv/conf/certs/server.pem"))
        self.assertEqual(config.tls.key_file, Path("/secret/server.key"))

    def test_invalid(self) -> None:
        """Paths must be non-empty strings, and ``~`` is refused rather than taken as a
        directory named ``~``."""
        self.assertEqual(_problems(_minimal(data_dir="")), ["data_dir: expected a path, got ''"])
        self.assertEqual(
            _problems(_minimal(data_dir=["/var"])), ["data_dir: expected a path, got list"]
        )
        self.assertEqual(
            _problems(_minimal(data_dir="~/rail")),
            [
                "data_dir: '~' is not expanded: give an absolute path or one relative to the"
                " configuration file, got '~/rail'"
            ],
        )


class ListenTests(SynchronousTestCase):
    def test_null_disables(self) -> None:
        """``https: null`` disables the listener."""
        config = parse_config(_minimal(listen={"https": None}), BASE)
        self.assertIsNone(config.listen.https)

    def test_ipv6(self) -> None:
        """Twisted's escaped colons give an IPv6 listener."""
        config = parse_config(_minimal(listen={"https": r"tcp6:443:interface=\:\:1"}), BASE)
        self.assertEqual(
            config.listen.https, ListenSpec(kind="tcp6", port=443, interface="::1", backlog=511)
        )

    def test_errors(self) -> None:
        """Bad descriptions and non-strings are reported at ``listen.https``."""
        self.assertEqual(
            _problems(_minimal(listen={"https": 443})),
            [
                'listen.https: expected an endpoint description like "tcp:443:interface=0.0.0.0"'
                " or null, got int"
            ],
        )
        self.assertEqual(
            _problems(_minimal(listen={"https": "ssl:443"})),
            [
                "listen.https: unsupported endpoint type 'ssl': give a tcp: or tcp6: description"
                ' like "tcp:443:interface=0.0.0.0" (Rail adds TLS itself)'
            ],
        )


class TLSTests(SynchronousTestCase):
    def test_modes(self) -> None:
        """self_signed alone, or both files (self_signed absent or false), select a mode."""
        files = {"cert_file": "/c.pem", "key_file": "/k.pem"}
        table = {
            "self_signed": {"self_signed": True},
            "files": files,
            "files, self_signed false": {"self_signed": False, **files},
            "self_signed, null files": {"self_signed": True, "cert_file": None, "key_file": None},
        }
        self.assertEqual(
            {name: parse_config(_minimal(tls=tls), BASE).tls.mode for name, tls in table.items()},
            {
                "self_signed": "self_signed",
                "files": "files",
                "files, self_signed false": "files",
                "self_signed, null files": "self_signed",
            },
        )

    def test_mode_errors(self) -> None:
        """Anything but exactly one mode is a single problem at ``tls`` that explains the
        choice."""
        cases: list[tuple[dict[str, object], str]] = [
            ({}, "no server certificate is configured"),
            ({"self_signed": False}, "no server certificate is configured"),
            (
                {"self_signed": True, "cert_file": "/c.pem", "key_file": "/k.pem"},
                "self_signed: true excludes cert_file and key_file",
            ),
            ({"self_signed": True, "key_file": "/k.pem"}, "self_signed: true excludes key_file"),
            ({"cert_file": "/c.pem"}, "cert_file is set without key_file"),
            ({"key_file": "/k.pem", "cert_file": None}, "key_file is set without cert_file"),
        ]
        self.assertEqual(
            [_problems(_minimal(tls=tls)) for tls, _ in cases],
            [[f"tls: {reason}: {TLS_CHOICE}"] for _, reason in cases],
        )

    def test_field_errors_first(self) -> None:
        """When a tls field is itself invalid, only that problem is reported: the mode check
        would only repeat it."""
        self.assertEqual(
            _problems(_minimal(tls={"self_signed": "true"})),
            ["tls.self_signed: expected true or false, got string"],
        )


class RangeTests(SynchronousTestCase):
    def test_bounds_inclusive(self) -> None:
        """Each bounded setting accepts exactly its documented lowest and highest values."""
        low = _minimal(
            pki={"client_validity": "1d"},
            limits={"http_body_size": "1KB", "http_idle_timeout": "1s"},
            shutdown={"drain_delay": "0s"},
        )
        high = _minimal(
            pki={"client_validity": "3650d"},
            limits={"http_body_size": "100MB", "http_idle_timeout": "1h"},
            shutdown={"drain_delay": "10m"},
        )
        low_config, high_config = parse_config(low, BASE), parse_config(high, BASE)
        self.assertEqual(
            (
                low_config.pki.client_validity,
                low_config.limits.http_body_size,
                low_config.limits.http_idle_timeout,
                low_config.shutdown.drain_delay,
            ),
            (86400.0, 1024, 1.0, 0.0),
        )
        self.assertEqual(
            (
                high_config.pki.client_validity,
                high_config.limits.http_body_size,
                high_config.limits.http_idle_timeout,
                high_config.shutdown.drain_delay,
            ),
            (3650 * 86400.0, 100 * 1024 * 1024, 3600.0, 600.0),
        )

    def test_out_of_bounds(self) -> None:
        """A value just outside its bounds names the bounds and the value given."""
        data = _minimal(
            pki={"client_validity": "3651d"},
            limits={"http_body_size": 1023, "http_idle_timeout": "999ms"},
            shutdown={"drain_delay": "10m1s"},
        )
        self.assertEqual(
            _problems(data),
            [
                'pki.client_validity: expected a duration from "1d" to "3650d", got \'3651d\'',
                'limits.http_body_size: expected a size from "1KB" to "100MB", got 1023',
                'limits.http_idle_timeout: expected a duration from "1s" to "1h", got \'999ms\'',
                'shutdown.drain_delay: expected a duration from "0s" to "10m", got \'10m1s\'',
            ],
        )

    def test_size_as_integer(self) -> None:
        """An integer size is a number of bytes."""
        config = parse_config(_minimal(limits={"http_body_size": 2048}), BASE)
        self.assertEqual(config.limits.http_body_size, 2048)


class HeaderLimitTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Without settings a header section may hold 1 MB and 1,000 fields."""
        limits = parse_config(_minimal(), BASE).limits
        self.assertEqual((limits.header_size, limits.header_fields), (1024 * 1024, 1000))

    def test_set(self) -> None:
        """``header_size`` is a size and ``header_fields`` a count."""
        data = _minimal(limits={"header_size": "64KB", "header_fields": 200})
        limits = parse_config(data, BASE).limits
        self.assertEqual((limits.header_size, limits.header_fields), (64 * 1024, 200))

    def test_bounds(self) -> None:
        """Values outside the bounds are path-qualified problems."""
        data = _minimal(limits={"header_size": "65MB", "header_fields": 9})
        self.assertEqual(
            _problems(data),
            [
                'limits.header_size: expected a size from "1KB" to "64MB", got \'65MB\'',
                "limits.header_fields: expected a number from 10 to 100000, got 9",
            ],
        )


class SectionTableTests(SynchronousTestCase):
    def test_table_must_match_class(self) -> None:
        """A section table that misses or invents an attribute fails when it is built, so a
        new schema field cannot be forgotten by the parser."""
        self.assertRaises(TypeError, section, Webhooks, {})
        self.assertRaises(
            TypeError, section, Webhooks, {"allow_http_loopback": boolean, "extra": boolean}
        )


class PrepareSettingsTests(SynchronousTestCase):
    def test_defaults_and_bounds(self) -> None:
        """delivery.prepare_timeout defaults to 30 s and prepare_threads to 4; each accepts
        its documented bounds and refuses what lies outside them, path-qualified."""
        default = parse_config(_minimal(), BASE).delivery
        self.assertEqual((default.prepare_timeout, default.prepare_threads), (30.0, 4))
        low = parse_config(_minimal(delivery={"prepare_timeout": "1s", "prepare_threads": 1}), BASE)
        high = parse_config(
            _minimal(delivery={"prepare_timeout": "1h", "prepare_threads": 64}), BASE
        )
        self.assertEqual((low.delivery.prepare_timeout, low.delivery.prepare_threads), (1.0, 1))
        self.assertEqual(
            (high.delivery.prepare_timeout, high.delivery.prepare_threads), (3600.0, 64)
        )
        self.assertEqual(
            _problems(_minimal(delivery={"prepare_timeout": "999ms", "prepare_threads": 0})),
            [
                'delivery.prepare_timeout: expected a duration from "1s" to "1h", got \'999ms\'',
                "delivery.prepare_threads: expected a number from 1 to 64, got 0",
            ],
        )

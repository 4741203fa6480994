"""Tests for ``rail.config.units``: durations and sizes as operators write them."""

from __future__ import annotations

from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from rail.config.units import parse_duration, parse_size


def _errors(parse: Callable[[object], object], inputs: list[object]) -> dict[str, str]:
    """Map ``repr`` of each input to the message of the ValueError ``parse`` raises for it."""
    messages = {}
    for text in inputs:
        try:
            result = parse(text)
        except ValueError as e:
            messages[repr(text)] = str(e)
        else:
            messages[repr(text)] = f"no error, returned {result!r}"
    return messages


class ParseDurationTests(SynchronousTestCase):
    def test_values(self) -> None:
        """Each unit and combination of units gives the exact number of seconds."""
        table = {
            "0s": 0.0,
            "250ms": 0.25,
            "1500ms": 1.5,
            "1s": 1.0,
            "90s": 90.0,
            "15m": 900.0,
            "1h": 3600.0,
            "1h30m": 5400.0,
            "5d": 432000.0,
            "2w": 1209600.0,
            "1w2d3h4m5s6ms": 788645.006,
            "3650d": 315360000.0,
        }
        self.assertEqual({text: parse_duration(text) for text in table}, table)

    def test_returns_float(self) -> None:
        """Durations are floats even when whole, so callers can rely on the type."""
        self.assertIsInstance(parse_duration("5s"), float)

    def test_errors(self) -> None:
        """Anything else is refused with a message showing the expected form and the input;
        bare numbers get a hint because their unit would be a guess."""
        example = 'expected a duration like "15m" or "5d"'
        hint = '(a number without a unit is ambiguous: add a unit such as "s" or "m")'
        self.assertEqual(
            _errors(
                parse_duration,  # type: ignore[arg-type]
                [
                    "5x",
                    "",
                    "15",
                    "1.5",
                    15,
                    1.5,
                    "1.5h",
                    "30m1h",
                    "1h1h",
                    "15M",
                    " 15m",
                    "-5s",
                    "5 s",
                    "m",
                    True,
                    None,
                ],
            ),
            {
                "'5x'": f"{example}, got '5x'",
                "''": f"{example}, got ''",
                "'15'": f"{example}, got '15' {hint}",
                "'1.5'": f"{example}, got '1.5' {hint}",
                "15": f"{example}, got 15 {hint}",
                "1.5": f"{example}, got 1.5 {hint}",
                "'1.5h'": f"{example}, got '1.5h'",
                "'30m1h'": f"{example}, got '30m1h'",
                "'1h1h'": f"{example}, got '1h1h'",
                "'15M'": f"{example}, got '15M'",
                "' 15m'": f"{example}, got ' 15m'",
                "'-5s'": f"{example}, got '-5s'",
                "'5 s'": f"{example}, got '5 s'",
                "'m'": f"{example}, got 'm'",
                "True": f"{example}, got True",
                "None": f"{example}, got None",
            },
        )

    def test_non_ascii_digits(self) -> None:
        """Only ASCII digits count: other scripts' digits are refused, not converted."""
        self.assertRaises(ValueError, parse_duration, "\u0661\u0665m")


class ParseSizeTests(SynchronousTestCase):
    def test_values(self) -> None:
        """Integers are bytes; KB, MB and GB are powers of 1024, like KiB, MiB and GiB, and
        the unit's letter case does not matter."""
        table: dict[str | int, int] = {
            0: 0,
            1024: 1024,
            "0B": 0,
            "512B": 512,
            "64KB": 65536,
            "64KiB": 65536,
            "1kb": 1024,
            "1MB": 1048576,
            "50MB": 52428800,
            "10MiB": 10485760,
            "10mib": 10485760,
            "1GB": 1073741824,
            "1GiB": 1073741824,
            "1.5MB": 1572864,
            "0.5KB": 512,
        }
        self.assertEqual({text: parse_size(text) for text in table}, table)

    def test_errors(self) -> None:
        """Negative sizes, unknown units, fractions of a byte and unitless strings are refused
        with a message showing the expected form and the input."""
        example = 'expected a size like "50MB" or "64KB"'
        self.assertEqual(
            _errors(
                parse_size,  # type: ignore[arg-type]
                [
                    -5,
                    "-5MB",
                    "5XB",
                    "",
                    "MB",
                    "1024",
                    "1.1KB",
                    "1.5B",
                    "5 MB",
                    "1TB",
                    True,
                    1.5,
                    None,
                ],
            ),
            {
                "-5": f"{example}, got -5 (a size cannot be negative)",
                "'-5MB'": f"{example}, got '-5MB'",
                "'5XB'": f"{example}, got '5XB'",
                "''": f"{example}, got ''",
                "'MB'": f"{example}, got 'MB'",
                "'1024'": f"{example}, got '1024' (give a unit: \"1024B\" for bytes)",
                "'1.1KB'": f"{example}, got '1.1KB' (not a whole number of bytes)",
                "'1.5B'": f"{example}, got '1.5B' (not a whole number of bytes)",
                "'5 MB'": f"{example}, got '5 MB'",
                "'1TB'": f"{example}, got '1TB'",
                "True": f"{example}, got True",
                "1.5": f"{example}, got 1.5",
                "None": f"{example}, got None",
            },
        )

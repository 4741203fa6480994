"""Tests that keep ``docs/configuration.md`` truthful: its examples are run."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.config import ConfigError, load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _blocks() -> list[tuple[str, str]]:
    """The fenced code blocks of the configuration reference, as (language, text)."""
    blocks: list[tuple[str, str]] = []
    language: str | None = None
    lines: list[str] = []
    for line in DOC.read_text(encoding="utf-8").splitlines(keepends=True):
        if language is None and line.startswith("```"):
            language, lines = line[3:].strip(), []
        elif language is not None and line.rstrip() == "```":
            blocks.append((language, "".join(lines)))
            language = None
        elif language is not None:
            lines.append(line)
    return blocks


class ConfigurationDocTests(SynchronousTestCase):
    def _write(self, text: str) -> Path:
        path = Path(self.mktemp())
        path.write_text(text, encoding="utf-8")
        return path

    def test_complete_examples_are_valid(self) -> None:
        """Every YAML example that starts with ``hostname:`` is a valid configuration,
        except the one that illustrates error messages."""
        examples = [text for language, text in _blocks() if language == "yaml"]
        valid = [e for e in examples if e.startswith("hostname:") and "colour:" not in e]
        self.assertEqual(len(valid), 3)
        for example in valid:
            load_config(self._write(example))

    def test_error_example_output(self) -> None:
        """The documented output of the invalid example is exactly what Rail reports."""
        blocks = _blocks()
        (index,) = [i for i, (_, text) in enumerate(blocks) if "colour: blue" in text]
        invalid, output = blocks[index][1], blocks[index + 1][1]
        error = self.assertRaises(ConfigError, load_config, self._write(invalid))
        self.assertEqual(str(error) + "\n", output)

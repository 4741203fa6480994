"""Tests for ``rail.config.load``: reading ``rail.yaml`` files, YAML errors, duplicate keys."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.config import ConfigError, load_config

MINIMAL = "hostname: mail.example.com\ntls:\n  self_signed: true\n"


class LoadConfigTests(SynchronousTestCase):
    def _write(self, text: str | bytes, name: str = "rail.yaml") -> Path:
        """Write ``text`` to ``name`` in a fresh directory and return its path."""
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / name
        if isinstance(text, str):
            path.write_text(text, encoding="utf-8")
        else:
            path.write_bytes(text)
        return path

    def _problems(self, path: str | Path) -> list[str]:
        """Every problem ``load_config`` reports for ``path``, as ``path: message`` lines."""
        error = self.assertRaises(ConfigError, load_config, path)
        return [str(problem) for problem in error.problems]

    def test_loads(self) -> None:
        """A valid file loads, from a ``str`` or a ``Path``."""
        path = self._write(MINIMAL)
        self.assertEqual(load_config(path).hostname, "mail.example.com")
        self.assertEqual(load_config(str(path)), load_config(path))

    def test_relative_paths_against_file_directory(self) -> None:
        """Relative paths in the file resolve against the file's directory, made absolute,
        not against the current directory."""
        path = self._write(
            "hostname: mail.example.com\n"
            "data_dir: var\n"
            "tls: {cert_file: tls/cert.pem, key_file: tls/key.pem}\n"
        )
        relative = os.path.relpath(path)
        config = load_config(relative)
        directory = path.absolute().parent
        self.assertEqual(config.data_dir, directory / "var")
        self.assertEqual(config.tls.cert_file, directory / "tls" / "cert.pem")
        self.assertEqual(config.tls.key_file, directory / "tls" / "key.pem")
        self.assertTrue(config.data_dir.is_absolute())

    def test_duplicate_keys(self) -> None:
        """A key repeated in a mapping is a problem at its path, at any depth, while keys
        of the same name in different mappings are fine."""
        path = self._write(
            "hostname: a.example.com\n"
            "tls:\n"
            "  self_signed: true\n"
            "listen:\n"
            "  https: tcp:1\n"
            "  https: tcp:2\n"
            "hostname: b.example.com\n"
        )
        self.assertEqual(
            self._problems(path),
            [
                "listen.https: duplicate key on line 6 (first given on line 5)",
                "hostname: duplicate key on line 7 (first given on line 1)",
            ],
        )

    def test_duplicate_quoted_key(self) -> None:
        """Quoting one spelling of a key does not hide the repeat."""
        path = self._write(MINIMAL + '"hostname": b.example.com\n')
        self.assertEqual(
            self._problems(path), ["hostname: duplicate key on line 4 (first given on line 1)"]
        )

    def test_duplicate_and_invalid_together(self) -> None:
        """Duplicate keys and invalid values are reported in one go."""
        path = self._write(MINIMAL + "tls:\n  self_signed: true\nlimits: 5\n")
        self.assertEqual(
            self._problems(path),
            [
                "tls: duplicate key on line 4 (first given on line 2)",
                "limits: expected a mapping, got int",
            ],
        )

    def test_syntax_error(self) -> None:
        """A YAML syntax error is one problem located as ``file:line:column``, with
        PyYAML's description."""
        path = self._write("hostname: mail.example.com\n  tls: 1\n")
        self.assertEqual(self._problems(path), [f"{path}:2:6: mapping values are not allowed here"])

    def test_syntax_error_with_context(self) -> None:
        """PyYAML's context, when it has one, is added with the line it starts on."""
        path = self._write("hostname: [a.example.com\ntls: {}\n")
        self.assertEqual(
            self._problems(path),
            [
                f"{path}:2:4: expected ',' or ']', but got ':'"
                " (while parsing a flow sequence on line 1)"
            ],
        )

    def test_empty_file(self) -> None:
        """A file with no document, or only comments, is an empty file."""
        for text in ("", "# nothing\n"):
            path = self._write(text)
            self.assertEqual(self._problems(path), [f"{path}: empty file"])

    def test_null_document(self) -> None:
        """A document that is only null is not a mapping."""
        self.assertEqual(
            self._problems(self._write("~\n")), ["(config): expected a mapping, got null"]
        )

    def test_missing_file(self) -> None:
        """A file that cannot be read is one problem naming the file and the OS reason."""
        missing = Path(self.mktemp())
        self.assertEqual(self._problems(missing), [f"{missing}: No such file or directory"])

    def test_directory(self) -> None:
        """A directory given as the config file is reported the same way."""
        directory = Path(self.mktemp())
        directory.mkdir()
        self.assertEqual(self._problems(directory), [f"{directory}: Is a directory"])

    def test_not_utf8(self) -> None:
        """Bytes that are not UTF-8 are refused with the offset of the first bad byte."""
        path = self._write(b"hostname: caf\xe9.example\n")
        self.assertEqual(
            self._problems(path), [f"{path}: not UTF-8 text: invalid continuation byte at byte 13"]
        )

    def test_utf8_bom(self) -> None:
        """A UTF-8 byte order mark, as some editors write, is accepted."""
        path = self._write(b"\xef\xbb\xbf" + MINIMAL.encode())
        self.assertEqual(load_config(path).hostname, "mail.example.com")

    def test_control_character(self) -> None:
        """A control character is refused with its position."""
        path = self._write("hostname: a\x07.example.com\n")
        self.assertEqual(
            self._problems(path),
            [f"{path}:1:12: unacceptable character #x0007: special characters are not allowed"],
        )

    def test_python_tags_refused(self) -> None:
        """Python object tags are refused, as with ``yaml.safe_load``."""
        path = self._write("hostname: !!python/object/apply:os.getcwd []\n")
        self.assertEqual(
            self._problems(path),
            [
                f"{path}:1:11: could not determine a constructor for the tag"
                " 'tag:yaml.org,2002:python/object/apply:os.getcwd'"
            ],
        )

    def test_several_documents(self) -> None:
        """A file holding more than one YAML document is refused."""
        path = self._write(MINIMAL + "---\n" + MINIMAL)
        self.assertEqual(
            self._problems(path),
            [
                f"{path}:4:1: but found another document"
                " (expected a single document in the stream on line 1)"
            ],
        )

    def test_impossible_date(self) -> None:
        """A well-formed but impossible YAML timestamp is a problem, not a crash."""
        path = self._write(MINIMAL + "data_dir: 2024-02-30\n")
        self.assertEqual(
            self._problems(path), [f"{path}: invalid value: day is out of range for month"]
        )

    def test_yaml_types_checked(self) -> None:
        """Values YAML reads as other types (dates, numbers) reach the type checks."""
        path = self._write(MINIMAL + "data_dir: 2024-02-03\nlocal_domains: [1.5]\n")
        self.assertEqual(
            self._problems(path),
            [
                "data_dir: expected a path, got date",
                "local_domains[0]: expected a string, got float",
            ],
        )

    def test_anchors(self) -> None:
        """Anchors, aliases and merge keys work as in ``yaml.safe_load``, and a key that
        overrides a merged one is not a duplicate."""
        path = self._write(
            "hostname: &name mail.example.com\n"
            "local_domains: [*name]\n"
            "tls: {self_signed: true}\n"
            "limits:\n"
            "  <<: {http_body_size: 2KB, http_idle_timeout: 5s}\n"
            "  http_idle_timeout: 9s\n"
        )
        config = load_config(path)
        self.assertEqual(config.local_domains, ("mail.example.com",))
        self.assertEqual(
            (config.limits.http_body_size, config.limits.http_idle_timeout), (2048, 9.0)
        )

    def test_recursive_anchor(self) -> None:
        """A node that contains itself does not hang the duplicate-key check."""
        path = self._write(MINIMAL + "loop: &loop [*loop]\n")
        self.assertEqual(self._problems(path), ["loop: unknown key"])

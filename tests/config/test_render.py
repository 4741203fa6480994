"""Tests for ``rail.config.render``: the development configuration."""

from __future__ import annotations

from pathlib import Path

import yaml
from twisted.trial.unittest import SynchronousTestCase

from rail.config import load_config, parse_config
from rail.config.listen import ListenSpec
from rail.config.render import dev_config_yaml


class DevConfigTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """The generated text parses into a development config: self-signed TLS, loopback
        HTTPS on the given port, http webhooks to loopback (which needs allow_private as
        well as allow_http_loopback), the given drain delay."""
        text = dev_config_yaml("rail.test", "var", 8443, drain_delay="3s")
        config = parse_config(yaml.safe_load(text), Path("/work"))
        self.assertEqual(config.hostname, "rail.test")
        self.assertEqual(config.data_dir, Path("/work/var"))
        self.assertEqual(config.local_domains, ("rail.test",))
        self.assertEqual(
            config.listen.https, ListenSpec(kind="tcp", port=8443, interface="127.0.0.1")
        )
        self.assertEqual(config.tls.mode, "self_signed")
        self.assertTrue(config.webhooks.allow_http_loopback)
        self.assertTrue(config.webhooks.allow_private)
        self.assertEqual(config.shutdown.drain_delay, 3.0)

    def test_default_drain_delay(self) -> None:
        """Without a drain delay, development shutdowns wait one second."""
        config = parse_config(yaml.safe_load(dev_config_yaml("localhost", "/tmp/x", 0)), Path("/"))
        self.assertEqual(config.shutdown.drain_delay, 1.0)
        self.assertEqual(config.listen.https, ListenSpec(kind="tcp", port=0, interface="127.0.0.1"))

    def test_loads_from_file(self) -> None:
        """Written to a file, it loads with ``load_config`` (no duplicate keys, relative
        data_dir next to the file)."""
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "rail.yaml"
        path.write_text(dev_config_yaml("localhost", "var", 8443), encoding="utf-8")
        self.assertEqual(load_config(path).data_dir, directory.absolute() / "var")

    def test_values_quoted(self) -> None:
        """Values that YAML would read as other types stay strings (a path named ``null``,
        one with ``: `` or ``#``)."""
        for data_dir in ["null", "a: b", "x #y", "yes", "1e3", "caf\u00e9"]:
            text = dev_config_yaml("localhost", data_dir, 8443)
            config = parse_config(yaml.safe_load(text), Path("/base"))
            self.assertEqual(config.data_dir, Path("/base") / data_dir)

    def test_commented(self) -> None:
        """Every top-level key is preceded or followed by a comment explaining it."""
        lines = dev_config_yaml("localhost", "var", 8443).splitlines()
        for index, line in enumerate(lines):
            if line and not line.startswith((" ", "#")):
                self.assertTrue(
                    lines[index - 1].startswith("#") or "#" in lines[index + 1],
                    f"no comment for {line!r}",
                )

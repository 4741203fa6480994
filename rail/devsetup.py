"""``rail init --dev DIR``: a working development set-up in one command.

Everything on 127.0.0.1 high ports, no root, no internet: a config, the CA, a server
certificate issued by that CA (so ``curl --cacert ca.crt`` verifies it), and one sample
client certificate. Running it again on an initialised directory changes nothing, so
``make run`` can call it every time.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import attrs
import yaml

from rail.config import Config, load_config, parse_config
from rail.config.render import dev_config_yaml
from rail.pki.files import load_or_create_ca, load_or_create_server_material, write_file_atomic
from rail.pki.issue import ClientRequest
from rail.pki.operations import ensure_directory, issue_client, publish_crl

__all__ = ["DEV_PORTS", "DevSetup", "init_dev"]

DEV_HTTPS_PORT = 8443
DEV_SUBMISSION_PORT = 8465
DEV_INBOUND_PORT = 8025
DEV_HTTP_PORT = 8080
DEV_DNS_PORT = 8053
SAMPLE_CLIENT = "app"
# ``rail init --dev`` options and their defaults.
DEV_PORTS = {
    "https_port": DEV_HTTPS_PORT,
    "submission_port": DEV_SUBMISSION_PORT,
    "inbound_port": DEV_INBOUND_PORT,
    "http_port": DEV_HTTP_PORT,
    "dns_port": DEV_DNS_PORT,
}


@attrs.frozen
class DevSetup:
    directory: Path
    config_path: Path
    config: Config
    created: bool
    ca_copy: Path
    client_certificate: Path
    client_key: Path


def init_dev(
    directory: Path,
    hostname: str,
    https_port: int,
    now: datetime,
    submission_port: int = DEV_SUBMISSION_PORT,
    inbound_port: int = DEV_INBOUND_PORT,
    http_port: int = DEV_HTTP_PORT,
    dns_port: int = DEV_DNS_PORT,
) -> DevSetup:
    """Create (or reuse) a development set-up under ``directory``.

    Raises ``ConfigError`` before writing anything if the hostname or port is unusable.
    """
    config_path = directory / "rail.yaml"
    created = not config_path.exists()
    if created:
        text = dev_config_yaml(
            hostname=hostname,
            data_dir="data",
            https_port=https_port,
            submission_port=submission_port,
            inbound_port=inbound_port,
            http_port=http_port,
            dns_port=dns_port,
        )
        parse_config(yaml.safe_load(text), directory.absolute())
        ensure_directory(directory)
        write_file_atomic(config_path, text.encode("utf-8"), 0o644)
    config = load_config(config_path)
    ca, _ = load_or_create_ca(config.data_dir, config.hostname, now)
    publish_crl(config.data_dir, ca, now)
    load_or_create_server_material(config.data_dir, ca, config.hostname, now)
    ca_copy = directory / "ca.crt"
    shutil.copyfile(config.data_dir / "ca" / "ca.crt", ca_copy)
    client_certificate = directory / f"{SAMPLE_CLIENT}.crt"
    client_key = directory / f"{SAMPLE_CLIENT}.key"
    if created:
        request = ClientRequest(
            name=SAMPLE_CLIENT,
            emails=(f"{SAMPLE_CLIENT}@{config.hostname}",),
            webhook="http://127.0.0.1:8088/inbound",
            key_type=config.pki.key_type,
            validity=timedelta(seconds=config.pki.client_validity),
        )
        issue_client(config, request, directory, now, force=True)
    return DevSetup(
        directory=directory,
        config_path=config_path,
        config=config,
        created=created,
        ca_copy=ca_copy,
        client_certificate=client_certificate,
        client_key=client_key,
    )

"""A private Dovecot on loopback that serves only SASL authentication, for Postfix.

Postfix's submission service asks it over a Unix socket (``smtpd_sasl_type = dovecot``)
whether a PLAIN or LOGIN login is right, against a passwd-file of the test's users. It
runs ``dovecot -F`` as a child process with its own configuration, state and log under a
fresh directory in /tmp, and no protocol listeners; needs root and Debian's dovecot-core.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import attrs

from tests.support.tools import need_root, need_tool

__all__ = ["RunningDovecot", "start_dovecot"]


@attrs.define
class RunningDovecot:
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def auth_socket(self) -> Path:
        """The socket Postfix asks (``smtpd_sasl_path``)."""
        return self.root / "auth-postfix"

    @property
    def log(self) -> Path:
        return self.root / "dovecot.log"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_dovecot(users: Mapping[str, str]) -> RunningDovecot:
    """Start Dovecot's SASL service for ``users`` (name → password); the caller waits for
    :attr:`RunningDovecot.auth_socket` and calls :meth:`RunningDovecot.stop`."""
    need_root("a private Dovecot instance")
    dovecot = need_tool("dovecot", "dovecot-core")
    root = Path(tempfile.mkdtemp(prefix="rail-dovecot-"))
    root.chmod(0o755)
    (root / "run").mkdir()
    (root / "state").mkdir()
    passwd = root / "passwd"
    passwd.write_text("".join(f"{name}:{{PLAIN}}{password}\n" for name, password in users.items()))
    passwd.chmod(0o644)
    config = root / "dovecot.conf"
    config.write_text(
        f"""protocols = none
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {root}/auth-postfix {{
    mode = 0666
  }}
}}
"""
    )
    process = subprocess.Popen(
        [dovecot, "-F", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return RunningDovecot(root, process)

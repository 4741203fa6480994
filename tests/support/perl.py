"""Perl's Mail::DKIM, the independent DKIM verifier, in a version that checks ed25519.

Mail::DKIM verifies ed25519 from 1.20230630 on; Debian 12 ships 1.20230212, so the test
command unpacks a newer one under ``/opt/rail-ci/mail-dkim`` (``.ci/install-mail-dkim``)
and tests put it first on ``PERL5LIB``. An older Mail::DKIM is a missing tool: the tests
that use it skip, or fail under ``CI=true`` (see :mod:`tests.support.tools`); they never
accept ``invalid`` for an ed25519 signature.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.tools import missing, need_tool

__all__ = ["ED25519_SINCE", "MAIL_DKIM", "perl_env", "require_mail_dkim"]

MAIL_DKIM = Path("/opt/rail-ci/mail-dkim/usr/share/perl5")
ED25519_SINCE = "1.20230630"


def perl_env() -> dict[str, str]:
    """The environment for ``perl``: the newer Mail::DKIM first on ``PERL5LIB``."""
    env = dict(os.environ)
    if MAIL_DKIM.is_dir():
        env["PERL5LIB"] = f"{MAIL_DKIM}:{env.get('PERL5LIB', '')}".rstrip(":")
    return env


def require_mail_dkim() -> str:
    """The version of the Mail::DKIM ``perl`` loads with :func:`perl_env`, if it verifies
    ed25519 and Net::DNS and CryptX are there; else :func:`missing`."""
    need_tool("perl", "perl")
    probe = subprocess.run(
        ["perl", "-MMail::DKIM", "-MNet::DNS", "-MCryptX", "-e", "print $Mail::DKIM::VERSION"],
        capture_output=True,
        text=True,
        check=False,
        env=perl_env(),
        timeout=60,
    )
    if probe.returncode != 0:
        missing(
            "Perl's Mail::DKIM, Net::DNS or CryptX is not installed (Debian packages"
            " libmail-dkim-perl libnet-dns-perl libcryptx-perl)"
        )
    version = probe.stdout.strip()
    if float(version) < float(ED25519_SINCE):
        missing(
            f"Mail::DKIM {version} cannot verify ed25519 (needs {ED25519_SINCE};"
            " .ci/install-mail-dkim puts one in /opt/rail-ci/mail-dkim)"
        )
    return version

"""A private Postfix instance on loopback, as the recipient MX of interop tests, or as
the internet MTA that relays to Rail's inbound port (``relay_to``).

Its own main.cf/master.cf, queue and Maildir under a fresh directory in /tmp (Postfix's
unprivileged processes must be able to reach it, which trial's temp directory does not
guarantee), smtpd on 127.0.0.1:PORT with STARTTLS (``smtpd_tls_security_level = may``)
and virtual delivery of every address of the given domains into one Maildir. Runs
``master -d`` as a child process; needs root (as Postfix itself does) and Debian's
postfix package.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.tools import missing, need_root

__all__ = ["MASTER", "RunningPostfix", "Submission", "need_postfix", "start_postfix"]

MASTER = Path("/usr/lib/postfix/sbin/master")

_QUEUE_DIRS = (
    "active",
    "bounce",
    "corrupt",
    "defer",
    "deferred",
    "flush",
    "hold",
    "incoming",
    "private",
    "saved",
    "trace",
)


@attrs.define
class RunningPostfix:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / "inbox" / "new"

    @property
    def log(self) -> Path:
        return self.root / "maillog"

    def delivered(self) -> list[bytes]:
        """Every message delivered so far (Maildir files, LF line ends), oldest first."""
        if not self.maildir.exists():
            return []
        files = sorted(self.maildir.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        return [path.read_bytes() for path in files]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _certificate(directory: Path, hostname: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def need_postfix() -> None:
    """Skip (fail under ``CI=true``) unless a private Postfix can run: root and Debian's
    postfix package."""
    need_root("a private Postfix instance")
    if not MASTER.exists():
        missing(f"{MASTER} is not installed (Debian package postfix)")


@attrs.frozen
class Submission:
    """A submission service (RFC 6409) beside port 25: STARTTLS required on
    ``starttls_port``, TLS from the first byte on ``implicit_port``, and on both SMTP AUTH
    through Dovecot's SASL at ``sasl_path`` (an absolute socket path), mandatory."""

    sasl_path: Path
    starttls_port: int
    implicit_port: int


def _submission_lines(address: str, submission: Submission) -> list[str]:
    options = [
        "  -o smtpd_sasl_auth_enable=yes",
        "  -o smtpd_sasl_type=dovecot",
        f"  -o smtpd_sasl_path={submission.sasl_path}",
        "  -o smtpd_sasl_authenticated_header=yes",
        "  -o smtpd_tls_auth_only=yes",
        "  -o smtpd_client_restrictions=permit_sasl_authenticated,reject",
        "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject",
    ]
    return [
        f"{address}:{submission.starttls_port} inet n - n - - smtpd",
        "  -o smtpd_tls_security_level=encrypt",
        *options,
        f"{address}:{submission.implicit_port} inet n - n - - smtpd",
        "  -o smtpd_tls_wrappermode=yes",
        *options,
    ]


def _write_main_cf(path: Path, text: str) -> None:
    """``text`` as main.cf with each parameter once, where its last setting was: every
    Postfix daemon warns of an overridden entry at start, through the postlog socket,
    and postlogd does too before it reads that socket; with the kernel's default of ten
    queued datagrams (net.unix.max_dgram_qlen) enough warnings leave every daemon,
    postlogd included, blocked on it, and the master never starts."""
    settings: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line[:1].isspace() and current is not None:
            current.append(line)  # a continued value
        elif "=" in line and not line.lstrip().startswith("#"):
            name = line.split("=", 1)[0].strip()
            settings.pop(name, None)
            current = settings[name] = [line]
        elif line.strip():
            current = settings[line] = [line]
    path.write_text("".join("\n".join(lines) + "\n" for lines in settings.values()))


def start_postfix(
    port: int,
    domains: tuple[str, ...],
    hostname: str = "mx.dest.test",
    relay_to: int | None = None,
    *,
    address: str = "127.0.0.1",
    extra: str = "",
    certificate: tuple[Path, Path] | None = None,
    submission: Submission | None = None,
) -> RunningPostfix:
    """Start Postfix's master on ``address``:``port``; the caller waits for the port and
    calls :meth:`RunningPostfix.stop`.

    With ``relay_to``, mail for every domain not in ``domains`` is relayed to
    127.0.0.1:``relay_to`` with STARTTLS required (``smtp_tls_security_level = encrypt``,
    unverified) and the TLS session logged. ``address`` is the loopback address smtpd listens
    on (two instances can share a port on 127.0.0.1 and 127.0.0.2; Postfix refuses an
    ``inet_interfaces`` address that no interface has, so another one is set as ``all`` and
    only master.cf names it); ``extra`` is appended to main.cf (a later setting overrides
    an earlier one). ``certificate`` (chain and key PEM files) replaces the self-signed
    certificate made for ``hostname``; ``submission`` adds the submission services. Skips
    without root or Postfix (see :func:`need_postfix`)."""
    need_postfix()
    user = pwd.getpwnam("postfix")
    postdrop = grp.getgrnam("postdrop").gr_gid
    root = Path(tempfile.mkdtemp(prefix="rail-postfix-"))
    root.chmod(0o755)
    conf, queue, data, mail = (root / n for n in ("conf", "queue", "data", "mail"))
    for directory in (conf, queue, data, mail):
        directory.mkdir()
    for name in _QUEUE_DIRS:
        (queue / name).mkdir(mode=0o700)
        os.chown(queue / name, user.pw_uid, -1)
    (queue / "pid").mkdir(mode=0o755)
    for name, mode in (("maildrop", 0o730), ("public", 0o710)):
        (queue / name).mkdir()
        (queue / name).chmod(mode)
        os.chown(queue / name, user.pw_uid, postdrop)
    data.chmod(0o700)
    os.chown(data, user.pw_uid, -1)
    os.chown(mail, user.pw_uid, user.pw_gid)
    cert, key = certificate if certificate is not None else _certificate(conf, hostname)
    mailboxes = " ".join(f"{{@{domain}=inbox/}}" for domain in domains)
    _write_main_cf(
        conf / "main.cf",
        f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
inet_interfaces = {"127.0.0.1" if address == "127.0.0.1" else "all"}
inet_protocols = ipv4
myhostname = {hostname}
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = {" ".join(domains)}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = inline:{{ {mailboxes} }}
virtual_uid_maps = static:{user.pw_uid}
virtual_gid_maps = static:{user.pw_gid}
virtual_mailbox_limit = 0
message_size_limit = 52428800
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_received_header = yes
smtputf8_enable = yes
smtpd_tls_loglevel = 1
"""
        + (
            f"""relayhost = [127.0.0.1]:{relay_to}
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
smtp_helo_name = {hostname}
"""
            if relay_to is not None
            else ""
        )
        + extra,
    )
    master = (Path("/etc/postfix/master.cf")).read_text().splitlines()
    lines = []
    for line in master:
        if line.startswith("smtp ") and " smtpd" in line:
            line = f"{address}:{port} inet n - n - - smtpd"
        lines.append(line)
    if submission is not None:
        lines.extend(_submission_lines(address, submission))
    (conf / "master.cf").write_text("\n".join(lines) + "\n")
    process = subprocess.Popen(
        [str(MASTER), "-c", str(conf), "-d"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return RunningPostfix(root, port, process)

"""A throwaway PostgreSQL cluster for the tests, one per test process.

The first test that asks for a database starts a cluster of its own (``initdb`` and
``pg_ctl`` from Debian's ``postgresql`` package, under a temporary directory, listening on a
Unix socket there and on a free port of 127.0.0.1), as the ``postgres`` user when the tests
run as root (PostgreSQL refuses to run as root). It is stopped when the process exits.
Each test gets a database of its own, dropped after it; a test without PostgreSQL skips
(fails under ``CI=true``: ``.ci/provision`` installs it).

``RAIL_TEST_PG_DSN`` names an existing server to use instead (a role that may create
databases); the tests then make and drop their databases there.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from itertools import count

import psycopg
from twisted.trial.unittest import SynchronousTestCase

from tests.support.ports import free_port
from tests.support.tools import missing

__all__ = ["cluster_dsn", "postgres_dsn"]

_lock = threading.Lock()
_server: str | None = None
_names = count(1)


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _start() -> str:
    """Start this process's cluster; its server DSN (database ``postgres``)."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        missing("PostgreSQL is not installed (Debian package postgresql)")
    root = os.geteuid() == 0
    user: pwd.struct_passwd | None = None
    if root:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            missing("the postgres user does not exist (Debian package postgresql)")
    directory = tempfile.mkdtemp(prefix="rail-pg-")
    data = os.path.join(directory, "data")
    if user is not None:
        os.chown(directory, user.pw_uid, user.pw_gid)

    def run(*command: str) -> None:
        argv = list(command)
        if user is not None:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, cwd=directory)

    run(initdb, "-D", data, "--auth=trust", "--username=postgres", "-E", "UTF8", "--no-sync")
    log = os.path.join(directory, "log")
    for attempt in range(3):  # another process may take the free port first
        port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port}"
            f" -c unix_socket_directories={directory} -c max_connections=200"
            " -c shared_buffers=64MB"
        )
        try:
            run(pg_ctl, "-D", data, "-w", "-t", "60", "-l", log, "-o", options, "start")
            break
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise

    def stop() -> None:
        try:
            run(pg_ctl, "-D", data, "-m", "immediate", "stop")
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(stop)
    return f"host={directory} port={port} user=postgres dbname=postgres"


def cluster_dsn() -> str:
    """The DSN of this process's server (database ``postgres``), started on first use."""
    global _server
    with _lock:
        if _server is None:
            _server = os.environ.get("RAIL_TEST_PG_DSN") or _start()
        return _server


def postgres_dsn(testcase: SynchronousTestCase) -> str:
    """A DSN of a new empty database, dropped when ``testcase`` ends."""
    server = cluster_dsn()
    name = f"rail_test_{os.getpid()}_{next(_names)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    testcase.addCleanup(drop)
    return psycopg.conninfo.make_conninfo(server, dbname=name)

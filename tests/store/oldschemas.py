"""The queue schemas of released Rail versions, for migration tests.

Derived from the current schema by taking out what later versions added, and checked
against that: version 13 has no lease columns; version 12 no index of deferral events
either; version 11 no TLS-RPT counters either; version 10 no suppressed recipients'
table either; version 9 no retention index nor tally of event jobs either; version 8 no
asynchronous bounce reports either; version 7 no message metadata nor suppression list
either; version 6 no event jobs either; version 5 (retention) has no admin tables and no
``deleted`` recipient status either; version 4 has no retention bookkeeping either.
"""

from __future__ import annotations

from rail.store import schema
from rail.store.admin import ADMIN_SCHEMA
from rail.store.bouncereports import ASYNC_REPORTS_SCHEMA
from rail.store.emit import EMISSION_SCHEMA
from rail.store.events import EVENT_JOBS_SCHEMA, EVENTS_SCHEMA
from rail.store.lease import LEASE_SCHEMA
from rail.store.messagemeta import MESSAGE_META_SCHEMA
from rail.store.purge import RETENTION_SCHEMA
from rail.store.sendcheck import SEND_CHECK_SCHEMA
from rail.store.suppressions import SUPPRESSIONS_SCHEMA
from rail.store.tlsreports import TLS_REPORTS_SCHEMA

__all__ = [
    "schema_v4",
    "schema_v5",
    "schema_v6",
    "schema_v7",
    "schema_v8",
    "schema_v9",
    "schema_v10",
    "schema_v11",
    "schema_v12",
    "schema_v13",
]

_CHECK_6 = "CHECK (status IN ('queued', 'deferred', 'sent', 'bounced', 'failed', 'deleted'))"
_CHECK_5 = "CHECK (status IN ('queued', 'deferred', 'sent', 'bounced', 'failed'))"


def schema_v13() -> str:
    """The script that made a fresh version 13 database (before ``PRAGMA user_version``)."""
    current = schema._SCHEMA
    assert current.count(LEASE_SCHEMA) == 1
    return current.replace(LEASE_SCHEMA, "")


def schema_v12() -> str:
    """The script that made a fresh version 12 database."""
    current = schema_v13()
    assert current.count(EMISSION_SCHEMA) == 1
    return current.replace(EMISSION_SCHEMA, "")


def schema_v11() -> str:
    """The script that made a fresh version 11 database."""
    current = schema_v12()
    assert current.count(TLS_REPORTS_SCHEMA) == 1
    return current.replace(TLS_REPORTS_SCHEMA, "")


def schema_v10() -> str:
    """The script that made a fresh version 10 database."""
    current = schema_v11()
    assert current.count(SEND_CHECK_SCHEMA) == 1
    return current.replace(SEND_CHECK_SCHEMA, "")


def schema_v9() -> str:
    """The script that made a fresh version 9 database."""
    current = schema_v10()
    assert current.count(EVENT_JOBS_SCHEMA) == 1
    return current.replace(EVENT_JOBS_SCHEMA, "")


def schema_v8() -> str:
    """The script that made a fresh version 8 database."""
    current = schema_v9()
    assert current.count(ASYNC_REPORTS_SCHEMA) == 1
    return current.replace(ASYNC_REPORTS_SCHEMA, "")


def schema_v7() -> str:
    """The script that made a fresh version 7 database."""
    current = schema_v8()
    added = MESSAGE_META_SCHEMA + SUPPRESSIONS_SCHEMA
    assert current.count(added) == 1
    return current.replace(added, "")


def schema_v6() -> str:
    """The script that made a fresh version 6 database."""
    current = schema_v7()
    assert current.count(EVENTS_SCHEMA) == 1
    return current.replace(EVENTS_SCHEMA, "")


def schema_v5() -> str:
    """The script that made a fresh version 5 database."""
    current = schema_v6()
    assert current.count(_CHECK_6) == 1 and current.count(ADMIN_SCHEMA) == 1
    return current.replace(ADMIN_SCHEMA, "").replace(_CHECK_6, _CHECK_5)


def schema_v4() -> str:
    """The script that made a fresh version 4 database."""
    v5 = schema_v5()
    assert v5.count(RETENTION_SCHEMA) == 1
    return v5.replace(RETENTION_SCHEMA, "")

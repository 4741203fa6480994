"""The PostgreSQL queue's schema, its versions, and making it at first start.

The same tables and concepts as SQLite's (:mod:`rail.store.schema`), in PostgreSQL's
types: ``BYTEA`` message data, ``DOUBLE PRECISION`` times, ``BIGINT`` sizes and counts, an
identity column where SQLite orders by ``rowid``, and text compared byte by byte
(``COLLATE "C"``) as SQLite compares it, whatever the database's locale: ids, cursors and
prefix searches rely on that order. Recipients, webhook jobs and event jobs
carry a lease (``claimed_by``, ``lease_until``): several processes share one queue, and a
claim holds a job only until its lease ends. The pending indexes keep ``lease_until`` in
their leaves, so a claim that skips leased rows reads them from the index alone.

SQLite's triggers are PL/pgSQL trigger functions here. The ``tally`` (counts by status for
``/stats`` and ``/metrics``, and the number of pending messages ``max_queued`` limits) is
kept in up to :data:`TALLY_SHARDS` rows per status, one per ``pg_backend_pid() %
TALLY_SHARDS``: each writer connection updates its own row, so writers of several
processes do not queue behind one hot row's lock, and a read sums a few rows.

The version is the one row of ``rail_schema``; a database at an older version runs every
later step of :data:`MIGRATIONS` in order, in one transaction. PostgreSQL's versions start
at 14 (SQLite's 13, plus the leases); 15 adds ``client_usage``, every node's acceptances
per client for the rate limits (:mod:`rail.store.sharedusage`); 16 and 17 count inserts,
then changes of status and ``finished`` rows, once per statement. Creating or migrating
takes a transaction-scoped advisory lock first, so nodes starting together do it once:
the others wait, then find the schema made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rail.store.db import Connection
from rail.store.model import StoreUnavailableError

__all__ = [
    "MIGRATIONS",
    "PG_SCHEMA_VERSION",
    "SCHEMA",
    "TALLY_SHARDS",
    "check_batch",
    "count_pending",
    "pending_messages",
    "prepare",
    "schema_version",
]

TALLY_SHARDS = 16
"""Tally rows per queue and status (``rail_tally_add`` in :data:`SCHEMA` says 16 too)."""
# pg_advisory_xact_lock key of schema changes: "rail" in ASCII.
_SCHEMA_LOCK = 0x7261696C

SCHEMA = """
CREATE TABLE rail_schema (version INTEGER NOT NULL);
CREATE TABLE messages (
    id TEXT COLLATE "C" PRIMARY KEY,
    client TEXT COLLATE "C" NOT NULL,
    sender TEXT COLLATE "C" NOT NULL,
    channel TEXT COLLATE "C" NOT NULL CHECK (channel IN ('smtp', 'api')),
    smtputf8 INTEGER NOT NULL,
    eight_bit INTEGER NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL,
    data BYTEA NOT NULL
);
CREATE INDEX messages_by_client ON messages (client, id);
CREATE TABLE recipients (
    message_id TEXT COLLATE "C" NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    address TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL
        CHECK (status IN ('queued', 'deferred', 'sent', 'bounced', 'failed', 'deleted')),
    attempts INTEGER NOT NULL,
    next_attempt_at DOUBLE PRECISION,
    last_reply TEXT COLLATE "C",
    updated_at DOUBLE PRECISION NOT NULL,
    remote_mta TEXT COLLATE "C",
    claimed_by TEXT COLLATE "C",
    lease_until DOUBLE PRECISION,
    PRIMARY KEY (message_id, idx)
);
CREATE INDEX recipients_pending ON recipients (next_attempt_at) INCLUDE (lease_until)
    WHERE status IN ('queued', 'deferred');
CREATE INDEX recipients_pending_message ON recipients (message_id)
    WHERE status IN ('queued', 'deferred');
CREATE TABLE idempotency (
    client TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT COLLATE "C" NOT NULL,
    message_id TEXT COLLATE "C" NOT NULL,
    recipients INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (client, key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);
CREATE TABLE inbound (
    id TEXT COLLATE "C" PRIMARY KEY,
    sender TEXT COLLATE "C" NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    subject TEXT COLLATE "C" NOT NULL,
    authentication TEXT COLLATE "C" NOT NULL,
    bounce_allowed INTEGER NOT NULL,
    peer TEXT COLLATE "C" NOT NULL,
    tls INTEGER NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL,
    data BYTEA NOT NULL
);
CREATE TABLE webhooks (
    message_id TEXT COLLATE "C" NOT NULL REFERENCES inbound (id) ON DELETE CASCADE,
    client TEXT COLLATE "C" NOT NULL,
    url TEXT COLLATE "C" NOT NULL,
    recipients TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL
        CHECK (status IN ('queued', 'deferred', 'delivered', 'failed')),
    attempts INTEGER NOT NULL,
    next_attempt_at DOUBLE PRECISION,
    last_reply TEXT COLLATE "C",
    updated_at DOUBLE PRECISION NOT NULL,
    claimed_by TEXT COLLATE "C",
    lease_until DOUBLE PRECISION,
    PRIMARY KEY (message_id, client)
);
CREATE INDEX webhooks_pending ON webhooks (next_attempt_at) INCLUDE (lease_until)
    WHERE status IN ('queued', 'deferred');
CREATE TABLE finished (
    queue TEXT COLLATE "C" NOT NULL CHECK (queue IN ('outbound', 'inbound')),
    id TEXT COLLATE "C" NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
    body_purged_at DOUBLE PRECISION,
    PRIMARY KEY (queue, id)
);
CREATE INDEX finished_body ON finished (finished_at) WHERE body_purged_at IS NULL;
CREATE INDEX finished_record ON finished (finished_at);
CREATE TABLE tally (
    queue TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    shard SMALLINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (queue, status, shard)
);
CREATE TABLE holds (
    message_id TEXT COLLATE "C" PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    held_at DOUBLE PRECISION NOT NULL,
    actor TEXT COLLATE "C" NOT NULL
);
CREATE TABLE admin_actions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT COLLATE "C" NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at DOUBLE PRECISION NOT NULL,
    actor TEXT COLLATE "C" NOT NULL,
    action TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C"
);
CREATE INDEX admin_actions_by_message ON admin_actions (message_id, at);
CREATE TABLE attempts (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT COLLATE "C" NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    reply TEXT COLLATE "C",
    remote_mta TEXT COLLATE "C"
);
CREATE INDEX attempts_by_message ON attempts (message_id, idx, at);
CREATE TABLE events (
    id TEXT COLLATE "C" PRIMARY KEY,
    client TEXT COLLATE "C" NOT NULL,
    type TEXT COLLATE "C" NOT NULL,
    message_id TEXT COLLATE "C" NOT NULL,
    recipient TEXT COLLATE "C",
    sandbox INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    details TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL
        CHECK (status IN ('queued', 'deferred', 'delivered', 'failed')),
    attempts INTEGER NOT NULL,
    next_attempt_at DOUBLE PRECISION,
    last_reply TEXT COLLATE "C",
    updated_at DOUBLE PRECISION NOT NULL,
    claimed_by TEXT COLLATE "C",
    lease_until DOUBLE PRECISION
);
CREATE INDEX events_pending ON events (next_attempt_at) INCLUDE (lease_until)
    WHERE status IN ('queued', 'deferred');
CREATE INDEX events_by_message ON events (message_id);
CREATE INDEX events_final ON events (updated_at) WHERE status IN ('delivered', 'failed');
CREATE INDEX events_deferred ON events (message_id, created_at)
    WHERE type = 'message.deferred';
CREATE TABLE message_meta (
    message_id TEXT COLLATE "C" PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    request_id TEXT COLLATE "C",
    tag TEXT COLLATE "C",
    metadata TEXT COLLATE "C" NOT NULL
);
CREATE INDEX message_meta_request ON message_meta (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX message_meta_tag ON message_meta (tag) WHERE tag IS NOT NULL;
CREATE TABLE suppressions (
    client TEXT COLLATE "C" NOT NULL,
    address TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C" NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'manual')),
    source TEXT COLLATE "C" NOT NULL,
    message_id TEXT COLLATE "C",
    detail TEXT COLLATE "C",
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (client, address)
);
CREATE INDEX suppressions_created ON suppressions (client, created_at);
CREATE TABLE async_reports (
    message_id TEXT COLLATE "C" NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('bounce', 'complaint')),
    status TEXT COLLATE "C",
    classification TEXT COLLATE "C",
    detail TEXT COLLATE "C",
    reporter TEXT COLLATE "C",
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (message_id, idx, kind)
);
CREATE TABLE suppressed_recipients (
    message_id TEXT COLLATE "C" NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    address TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C" NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (message_id, idx)
);
CREATE TABLE tls_outcomes (
    day TEXT COLLATE "C" NOT NULL,
    policy_domain TEXT COLLATE "C" NOT NULL,
    policy_type TEXT COLLATE "C" NOT NULL,
    policy_strings TEXT COLLATE "C" NOT NULL,
    result TEXT COLLATE "C" NOT NULL,
    mx_host TEXT COLLATE "C" NOT NULL,
    receiving_ip TEXT COLLATE "C" NOT NULL,
    count BIGINT NOT NULL,
    failure_reason TEXT COLLATE "C",
    PRIMARY KEY (day, policy_domain, policy_type, policy_strings, result, mx_host, receiving_ip)
);

CREATE TABLE client_usage (
    client TEXT COLLATE "C" NOT NULL,
    bucket DOUBLE PRECISION NOT NULL,
    node TEXT COLLATE "C" NOT NULL,
    messages BIGINT NOT NULL,
    recipients BIGINT NOT NULL,
    PRIMARY KEY (bucket, client, node)
);

-- Adds d to the tally row of (q, s) of this connection's shard.
CREATE FUNCTION rail_tally_add(q TEXT, s TEXT, d BIGINT) RETURNS void LANGUAGE sql AS $$
    INSERT INTO tally (queue, status, shard, n)
        VALUES (q, s, pg_backend_pid() % 16, d)
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = tally.n + excluded.n
$$;
-- Jobs by status (TG_ARGV[0]: the queue), on insert, delete and change of status.
CREATE FUNCTION rail_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM rail_tally_add(TG_ARGV[0], OLD.status, -1);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM rail_tally_add(TG_ARGV[0], NEW.status, 1);
    END IF;
    RETURN NULL;
END
$$;
-- Finished messages by queue (TG_ARGV[0]: the tally's queue); messages stored less the
-- finished outbound ones is the number of pending messages (pending_messages).
CREATE FUNCTION rail_tally_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM rail_tally_add(TG_ARGV[0], NEW.queue, 1);
    ELSE
        PERFORM rail_tally_add(TG_ARGV[0], OLD.queue, -1);
    END IF;
    RETURN NULL;
END
$$;
-- A message pending again (an operator's retry of a final recipient) leaves ``finished``.
CREATE FUNCTION rail_unfinished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM finished WHERE queue = TG_ARGV[0] AND id = NEW.message_id;
    RETURN NULL;
END
$$;
"""

# Inserts are tallied once per statement (transition tables; changes of status too, since
# schema 17, below), deletes once per row: a batch of messages inserted in one statement
# costs one upsert.
_TALLY_INSERTS = """
CREATE OR REPLACE FUNCTION rail_tally_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tally (queue, status, shard, n)
        SELECT TG_ARGV[0], status, pg_backend_pid() % 16, count(*) FROM added GROUP BY status
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = tally.n + excluded.n;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION rail_tally_messages_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tally (queue, status, shard, n)
        SELECT 'messages', 'stored', pg_backend_pid() % 16, count(*) FROM added
        HAVING count(*) > 0
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = tally.n + excluded.n;
    RETURN NULL;
END
$$;
"""
# A batch written on assumptions (the writer's first pass, rail.store.writer: none of its
# recipients is suppressed, the pending count of this node's previous batch still holds)
# ends with this check, in its transaction, its own changes seen: an error (SQLSTATE
# RA001) if a recipient is suppressed or more than max_queued messages are now pending,
# and the batch is written again after asking.
_ASSUMPTIONS = """
CREATE OR REPLACE FUNCTION rail_check_batch(clients TEXT[], addresses TEXT[], max_queued BIGINT)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(clients, addresses) AS k (client, address)
               JOIN suppressions s ON s.client = k.client AND s.address = k.address) THEN
        RAISE EXCEPTION 'a recipient of the batch is suppressed' USING ERRCODE = 'RA001';
    END IF;
    IF (SELECT coalesce(sum(CASE WHEN queue = 'messages' THEN n ELSE -n END), 0) FROM tally
        WHERE (queue = 'messages' AND status = 'stored')
           OR (queue = 'finished' AND status = 'outbound')) > max_queued THEN
        RAISE EXCEPTION 'more than max_queued messages pending' USING ERRCODE = 'RA001';
    END IF;
END
$$;
"""
# Changes of status are tallied once per statement too (schema 17): the rows after the
# statement counted in, the rows before it counted out, so rows whose status did not change
# cancel out (a claim, a lease renewal: no row written). A batch's delivery results,
# updated in one statement (rail.store.recordbatch), cost one upsert; so do the
# ``finished`` rows its messages make. A statement trigger on UPDATE cannot name columns
# (transition tables forbid it), so it runs for every UPDATE of the table.
_TALLY_CHANGES = """
CREATE OR REPLACE FUNCTION rail_tally_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tally (queue, status, shard, n)
        SELECT TG_ARGV[0], status, pg_backend_pid() % 16, sum(d) FROM (
            SELECT status, 1 AS d FROM after_rows
            UNION ALL SELECT status, -1 FROM before_rows) AS c
        GROUP BY status HAVING sum(d) <> 0
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = tally.n + excluded.n;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION rail_tally_finished_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tally (queue, status, shard, n)
        SELECT 'finished', queue, pg_backend_pid() % 16, count(*) FROM added GROUP BY queue
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = tally.n + excluded.n;
    RETURN NULL;
END
$$;
"""
_CHANGES = """
CREATE TRIGGER {table}_tally_update AFTER UPDATE ON {table}
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows FOR EACH STATEMENT
    EXECUTE FUNCTION rail_tally_changed('{queue}');
"""
_FINISHED = """
CREATE TRIGGER finished_tally AFTER DELETE ON finished
    FOR EACH ROW EXECUTE FUNCTION rail_tally_rows('finished');
CREATE TRIGGER finished_tally_insert AFTER INSERT ON finished
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION rail_tally_finished_inserted();
"""
_TALLY = """
CREATE TRIGGER {table}_tally AFTER DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION rail_tally('{queue}');
CREATE TRIGGER {table}_tally_insert AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION rail_tally_inserted('{queue}');
"""
_PER_TABLE = _TALLY + _CHANGES
_UNFINISHED = """
CREATE TRIGGER {table}_unfinished AFTER UPDATE OF status ON {table}
    FOR EACH ROW WHEN (NEW.status IN ('queued', 'deferred')
        AND OLD.status NOT IN ('queued', 'deferred'))
    EXECUTE FUNCTION rail_unfinished('{queue}');
"""

SCHEMA += (
    _TALLY_INSERTS
    + _TALLY_CHANGES
    + _ASSUMPTIONS
    + _PER_TABLE.format(table="recipients", queue="outbound")
    + _PER_TABLE.format(table="webhooks", queue="inbound")
    + _PER_TABLE.format(table="events", queue="events")
    + _UNFINISHED.format(table="recipients", queue="outbound")
    + _UNFINISHED.format(table="webhooks", queue="inbound")
    + """
CREATE FUNCTION rail_tally_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rail_tally_add('messages', 'stored', CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END);
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_tally AFTER DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION rail_tally_messages();
CREATE TRIGGER messages_tally_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION rail_tally_messages_inserted();
"""
    + _FINISHED
)

MIGRATIONS: dict[int, str] = {
    # 15: every node's acceptances per client and 5-second bucket (cluster-wide rate
    # limits, rail.store.sharedusage), filled with the last day's mail already stored so
    # the limits keep counting it across the upgrade.
    15: """
CREATE TABLE client_usage (
    client TEXT COLLATE "C" NOT NULL,
    bucket DOUBLE PRECISION NOT NULL,
    node TEXT COLLATE "C" NOT NULL,
    messages BIGINT NOT NULL,
    recipients BIGINT NOT NULL,
    PRIMARY KEY (bucket, client, node)
);
INSERT INTO client_usage (client, bucket, node, messages, recipients)
    SELECT client, floor(received_at / 5) * 5, 'schema-15', count(*),
        sum((SELECT count(*) FROM recipients WHERE message_id = messages.id))
    FROM messages
    WHERE sender != '' AND received_at >= extract(epoch FROM now()) - 86400
    GROUP BY client, floor(received_at / 5) * 5;
""",
    # 16: inserts are tallied once per statement (transition tables), not once per row:
    # a batch of messages inserted in one statement then costs one upsert per table; a
    # batch's check that none of its recipients is suppressed.
    16: _TALLY_INSERTS
    + _ASSUMPTIONS
    + """
DROP TRIGGER messages_tally ON messages;
DROP TRIGGER IF EXISTS messages_tally_insert ON messages;
CREATE TRIGGER messages_tally AFTER DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION rail_tally_messages();
CREATE TRIGGER messages_tally_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION rail_tally_messages_inserted();
"""
    + "".join(
        f"DROP TRIGGER {table}_tally ON {table};\n"
        f"DROP TRIGGER IF EXISTS {table}_tally_insert ON {table};\n"
        + _TALLY.format(table=table, queue=queue)
        for table, queue in (
            ("recipients", "outbound"),
            ("webhooks", "inbound"),
            ("events", "events"),
        )
    ),
    # 17: changes of status and ``finished`` rows are tallied once per statement.
    17: _TALLY_CHANGES
    + "DROP TRIGGER finished_tally ON finished;\n"
    + "DROP TRIGGER IF EXISTS finished_tally_insert ON finished;\n"
    + _FINISHED
    + "".join(
        f"DROP TRIGGER {table}_tally_update ON {table};\n"
        + _CHANGES.format(table=table, queue=queue)
        for table, queue in (
            ("recipients", "outbound"),
            ("webhooks", "inbound"),
            ("events", "events"),
        )
    ),
}
"""Each version's step from the one before it (the first version, 14, has none): a new
version adds its step here and its tables to :data:`SCHEMA`."""

PG_SCHEMA_VERSION = max(MIGRATIONS, default=14)


def schema_version(connection: Connection) -> int | None:
    """The version the database is at, or None when it has no Rail schema."""
    if connection.execute("SELECT to_regclass('rail_schema')").fetchone()[0] is None:
        return None
    row = connection.execute("SELECT version FROM rail_schema").fetchone()
    return None if row is None else int(row[0])


def prepare(connection: Connection, name: str) -> None:
    """Create the schema in an empty database, or migrate an older one, in one transaction
    under the schema lock; StoreUnavailableError naming ``name`` for a database that is
    not Rail's or is at a version this Rail does not know (a newer Rail's)."""
    connection.execute("BEGIN")
    try:
        connection.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
        version = schema_version(connection)
        if version is None:
            tables = connection.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
            ).fetchone()[0]
            if tables:
                raise StoreUnavailableError(
                    f"{name}: not a Rail queue database (no schema version)"
                )
            connection.execute(SCHEMA)
            connection.execute("INSERT INTO rail_schema (version) VALUES (?)", (PG_SCHEMA_VERSION,))
        elif version < PG_SCHEMA_VERSION and all(
            step in MIGRATIONS for step in range(version + 1, PG_SCHEMA_VERSION + 1)
        ):
            for step in range(version + 1, PG_SCHEMA_VERSION + 1):
                connection.execute(MIGRATIONS[step])
            connection.execute("UPDATE rail_schema SET version = ?", (PG_SCHEMA_VERSION,))
        elif version != PG_SCHEMA_VERSION:
            raise StoreUnavailableError(f"{name}: unsupported queue schema version {version}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def check_batch(connection: Connection, pairs: Iterable[tuple[str, str]], max_queued: int) -> None:
    """Fail the transaction (SQLSTATE ``RA001``: rail.store.backend.ASSUMED_WRONG) if any ``(client,
    normalized address)`` of ``pairs`` is suppressed, or more than ``max_queued`` messages
    are pending, seeing the transaction's own changes: one statement, sent without
    waiting in pipeline mode, checks what a batch written without asking assumed."""
    keys = list(dict.fromkeys(pairs))
    connection.execute(
        "SELECT rail_check_batch(?::text[], ?::text[], ?)",
        ([client for client, _ in keys], [address for _, address in keys], max_queued),
    )


def pending_messages(connection: Connection) -> int:
    """Messages with a recipient still to deliver, across every node: stored messages
    less finished ones, from the tally (a few dozen rows whatever the queue holds)."""
    return count_pending(connection)()


def count_pending(connection: Connection) -> Callable[[], int]:
    """:func:`pending_messages` asked now and read when the result is called: in pipeline
    mode its answer comes back with the next statement whose rows are read."""
    cursor = connection.execute(
        "SELECT coalesce(sum(CASE WHEN queue = 'messages' THEN n ELSE -n END), 0) FROM tally"
        " WHERE (queue = 'messages' AND status = 'stored')"
        " OR (queue = 'finished' AND status = 'outbound')"
    )
    return lambda: int(cursor.fetchone()[0])

"""How far a burst spread over nodes passes a per-client rate limit (PostgreSQL, issue 17).

Usage: python bench/shared_rates.py [--nodes 2] [--rate 200] [--limit 300] [--seconds 5]

NODES stores on one fresh database of the test cluster (``tests/support/postgres.py``, or
``RAIL_TEST_PG_DSN``), each with its own node id, its own rate counters and its own usage
poller, as NODES Rail processes have. Each node offers RATE messages a second of one client
limited to LIMIT messages a minute, for SECONDS seconds, checking and counting each as the
API does (check, count, then store). Prints what each node accepted, the total against the
limit (the overshoot: what the other nodes accepted in the last poll interval), and how
soon each node refused. Without the shared counts the total would be NODES times LIMIT.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from twisted.internet import defer, task

from rail.config.schema import ClientLimits
from rail.policy.rates import ClientRates
from rail.store.postgres import PostgresStore
from rail.store.usagepoll import UsagePoller
from tests.store.test_contract import make_message
from tests.support.postgres import cluster_dsn

_TICK = 0.01


def _fresh_database(server: str, name: str) -> str:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(**{**conninfo_to_dict(server), "dbname": name})


async def main(reactor: Any, args: argparse.Namespace) -> None:
    dsn = _fresh_database(cluster_dsn(), "rail_bench_shared_rates")
    limits = ClientLimits(messages_per_minute=args.limit)
    nodes = []
    for index in range(args.nodes):
        store = PostgresStore.open(dsn, reactor, max_queued=10**9, node=f"bench/{index}")
        store.start()
        rates = ClientRates(reactor, lambda client: limits)
        poller = UsagePoller(reactor, store, rates)
        poller.startService()
        nodes.append({"store": store, "rates": rates, "poller": poller, "accepted": 0})
    while any(node["poller"].polls == 0 for node in nodes):  # seeded
        await task.deferLater(reactor, _TICK, lambda: None)
    started = time.monotonic()
    pending: list[defer.Deferred[Any]] = []
    offered = 0
    for node in nodes:
        node["first_refusal"] = None
    while time.monotonic() - started < args.seconds:
        # Offered at RATE a second by the clock, however long a tick took.
        due = int(args.rate * (time.monotonic() - started)) - offered
        offered += due
        for node in nodes:
            for _ in range(due):
                if node["rates"].check_message("app") is not None:
                    if node["first_refusal"] is None:
                        node["first_refusal"] = time.monotonic() - started
                    continue
                node["rates"].record("app", 1)
                node["accepted"] += 1
                pending.append(
                    node["store"].accept(make_message(client="app", received_at=reactor.seconds()))
                )
        await task.deferLater(reactor, _TICK, lambda: None)
    await defer.DeferredList(pending)
    total = sum(node["accepted"] for node in nodes)
    for index, node in enumerate(nodes):
        refused = node["first_refusal"]
        print(
            f"node {index}: accepted {node['accepted']:5d}, first refusal at"
            f" {'never' if refused is None else f'{refused:.2f} s'},"
            f" polls {node['poller'].polls}, merged {node['poller'].merged}"
        )
    print(
        f"{args.nodes} nodes at {args.rate} msg/s each, limit {args.limit}/min:"
        f" accepted {total} ({total - args.limit:+d}, {total / args.limit:.2f} x the limit)"
    )
    for node in nodes:
        node["poller"].stopService()
        await node["store"].close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--rate", type=int, default=200, help="messages a second per node")
    parser.add_argument("--limit", type=int, default=300, help="messages a minute")
    parser.add_argument("--seconds", type=float, default=5.0)
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, parser.parse_args())))

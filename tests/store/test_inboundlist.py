"""The console's Inbound page reads: recent inbound mail with its jobs, and a retry (run
on each store by tests.store.test_trail)."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from tests.store.test_inbound import _NOW, make_inbound


async def check_recent_inbound(test: TestCase, store: Any) -> None:
    """Inbound messages come newest first with their authentication results and one job
    per client; ``before`` pages on; a retry makes the pending jobs due now and says how
    many."""
    first = make_inbound(received_at=_NOW)
    second = make_inbound(received_at=_NOW + 1)
    await store.accept_inbound(first)
    await store.accept_inbound(second)
    found = await store.recent_inbound()
    test.assertEqual([m.id for m in found], [second.id, first.id])
    test.assertEqual(found[0].authentication["spf"], {"result": "pass"})
    test.assertEqual(
        [(j.client, j.status, j.recipients) for j in found[0].jobs],
        [
            ("app1", "queued", ("a@rail.test", "b@rail.test")),
            ("app2", "queued", ("c@rail.test",)),
        ],
    )
    older = await store.recent_inbound(second.id)
    test.assertEqual([m.id for m in older], [first.id])
    test.assertEqual(await store.retry_inbound(first.id, _NOW + 60), 2)
    [again] = await store.recent_inbound(second.id)
    test.assertEqual({j.next_attempt_at for j in again.jobs}, {_NOW + 60})
    test.assertEqual(await store.retry_inbound("01J0000000000000000000000A", _NOW), 0)

"""The reactor lag probe in the running service tree: /metrics and /stats over real TLS."""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from tests.integration.test_https import _RunningRail

_COUNT = re.compile(rb"^rail_reactor_lag_seconds_count (\S+)$", re.MULTILINE)


class ReactorLagTests(_RunningRail):
    timeout = 30

    @inlineCallbacks
    def test_metrics_and_stats(self) -> Any:
        """The service tree probes its reactor: /metrics carries the
        rail_reactor_lag_seconds histogram (buckets from 1 ms) with the probes made so
        far, and /stats the p99 and maximum of the last minute of them."""
        count = 0.0
        while count < 2:
            response = yield self.request("GET", "/metrics")
            self.assertEqual(response.status, 200)
            self.assertIn(b'rail_reactor_lag_seconds_bucket{le="0.001"}', response.body)
            match = _COUNT.search(response.body)
            assert match is not None, response.body
            count = float(match[1])
            yield deferLater(reactor, 0.1, lambda: None)
        response = yield self.request("GET", "/stats")
        lag = json.loads(response.body)["reactor_lag_seconds"]
        self.assertEqual(set(lag), {"samples", "p99", "max"})
        self.assertGreaterEqual(lag["samples"], 2)
        self.assertGreaterEqual(lag["max"], lag["p99"])
        self.assertIsNotNone(self.service.getServiceNamed("reactor-lag"))

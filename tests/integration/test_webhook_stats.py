"""Inbound webhook figures in the running service tree: mail arrives on Rail's port 25,
Rail POSTs it to a receiver on loopback, and ``/metrics`` and ``/stats`` (over real TLS)
count the POST and show the webhook jobs by status, read from the store."""

from __future__ import annotations

import json
import smtplib
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.service import build_service
from rail.shared.registry import registry_source
from tests.integration.tlsclient import https_request
from tests.integration.webhookrig import webhook_rig


def _send(port: int) -> None:
    message = "From: <c@outside.test>\r\nTo: <shop@rail.test>\r\nSubject: hi\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.sendmail("c@outside.test", ["shop@rail.test"], message.encode())


class WebhookStatsTests(TestCase):
    timeout = 60

    async def test_a_delivered_post_is_counted(self) -> None:
        """After one inbound message is POSTed and answered 2xx: ``rail_webhooks_total``
        counts one delivered POST, ``rail_queue_webhooks`` one delivered job, and
        ``/stats``' ``webhooks`` section says the same with the latency sample."""
        rig = await webhook_rig(self)
        receiver, base, config = rig.receiver, rig.base, rig.config
        request = ClientRequest(
            name="shop",
            emails=("shop@rail.test",),
            webhook=rig.hook,
            key_type="ed25519",
            validity=timedelta(days=1),
        )
        issue_client(config, request, base, datetime.now(UTC), source=registry_source(config))
        service = build_service(config, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        https = service.getServiceNamed("https").port.getHost().port
        inbound = service.getServiceNamed("inbound").port.getHost().port
        ca = config.data_dir / "ca" / "ca.crt"

        def get(path: str) -> Any:
            return deferToThread(https_request, https, "GET", path, ca)

        await deferToThread(_send, inbound)
        metrics = ""
        # The counter moves when the answer is decided; the gauge, read from the store,
        # once the result is on disk and the counts cached (up to a second) are read again.
        wanted = (
            'rail_webhooks_total{status="delivered"} 1.0',
            'rail_queue_webhooks{status="delivered"} 1.0',
        )
        for _ in range(400):
            metrics = (await get("/metrics")).body.decode()
            if all(line in metrics for line in wanted):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(receiver.posts), 1)
        self.assertIn('rail_webhooks_total{status="delivered"} 1.0', metrics)
        self.assertIn('rail_webhooks_total{status="failed"} 0.0', metrics)
        self.assertIn('rail_queue_webhooks{status="delivered"} 1.0', metrics)
        self.assertIn('rail_queue_webhooks{status="queued"} 0.0', metrics)
        section = json.loads((await get("/stats")).body)["webhooks"]
        self.assertEqual(
            (section["jobs"]["delivered"], section["results_since_start"]),
            (1, {"delivered": 1, "deferred": 0, "failed": 0}),
        )
        self.assertEqual(section["received_to_delivered_seconds"]["samples"], 1)

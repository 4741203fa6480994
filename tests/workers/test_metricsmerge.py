"""rail.workers.metricsmerge: one /metrics text for every worker."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from rail.workers.metricsmerge import merge


def _text(sent: int, queued: int) -> str:
    """A worker's own text: a counter, a histogram and a store-derived gauge."""
    registry = CollectorRegistry()
    results = Counter("rail_delivery_results", "Results.", ["result"], registry=registry)
    results.labels(result="sent").inc(sent)
    Histogram("rail_attempt_seconds", "Attempts.", registry=registry).observe(0.2)
    queue = Gauge("rail_queue_recipients", "Queue.", ["status"], registry=registry)
    queue.labels(status="queued").set(queued)
    return generate_latest(registry).decode()


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


class MergeTests(SynchronousTestCase):
    def test_samples_labelled_per_worker(self) -> None:
        """Each worker's samples keep their labels and gain worker="k"."""
        samples = _samples(merge(0, {0: _text(3, 7), 1: _text(5, 7)}))
        self.assertEqual(
            samples[("rail_delivery_results_total", (("result", "sent"), ("worker", "0")))], 3.0
        )
        self.assertEqual(
            samples[("rail_delivery_results_total", (("result", "sent"), ("worker", "1")))], 5.0
        )
        self.assertEqual(samples[("rail_attempt_seconds_count", (("worker", "1"),))], 1.0)

    def test_families_written_once(self) -> None:
        """The text format wants one HELP and TYPE per family, its samples together."""
        text = merge(1, {0: _text(1, 0), 1: _text(2, 0), 2: _text(3, 0)}).decode()
        self.assertEqual(text.count("# TYPE rail_delivery_results_total counter"), 1)
        self.assertEqual(text.count("# TYPE rail_attempt_seconds histogram"), 1)

    def test_store_families_once(self) -> None:
        """The queue, read from the shared store, comes from the answering worker alone,
        without a worker label (a sum over workers counts it once)."""
        samples = _samples(merge(1, {0: _text(0, 99), 1: _text(0, 7)}))
        queue = {key: value for key, value in samples.items() if key[0] == "rail_queue_recipients"}
        self.assertEqual(queue, {("rail_queue_recipients", (("status", "queued"),)): 7.0})

    def test_missing_worker(self) -> None:
        """A worker that did not answer is rail_worker_up 0; the others are 1."""
        samples = _samples(merge(0, {0: _text(1, 0), 1: None}))
        self.assertEqual(samples[("rail_worker_up", (("worker", "0"),))], 1.0)
        self.assertEqual(samples[("rail_worker_up", (("worker", "1"),))], 0.0)
        self.assertNotIn(
            ("rail_delivery_results_total", (("result", "sent"), ("worker", "1"))), samples
        )

    def test_unreadable_text(self) -> None:
        """A text that does not parse counts as no answer rather than failing the scrape."""
        samples = _samples(merge(0, {0: _text(1, 0), 1: "rail_x{ 1\n"}))
        self.assertEqual(samples[("rail_worker_up", (("worker", "1"),))], 0.0)

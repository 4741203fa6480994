"""One ``/metrics`` answer for every worker: their Prometheus texts merged, each sample
labelled with its worker (``worker="1"``). Pure: texts in, text out.

A scrape reaches one worker (whichever accepted the connection), which gathers the
others' texts (:mod:`rail.workers.metrics`) and merges them here. Each metric family is
written once, with the samples of every worker, as the text format requires. The
families read from the shared store at scrape time (``rail_queue_*``: the queue by
status, the same whichever worker reads them) are taken from the answering worker only,
without a worker label, so that summing over workers counts the queue once.
``rail_worker_up`` says which workers answered.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

__all__ = ["SHARED_PREFIX", "WORKER_LABEL", "merge"]

SHARED_PREFIX = "rail_queue_"
"""Families read from the store, the same on every worker."""
WORKER_LABEL = "worker"


class _Families:
    """A collector that yields already built families (for ``generate_latest``)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def merge(answering: int, texts: Mapping[int, str | None]) -> bytes:
    """The exposition text of every worker's metrics: ``texts`` maps each worker's index
    to its own text, None for a worker that did not answer; ``answering`` is the worker
    whose store-derived families are kept."""
    merged: dict[str, Metric] = {}
    for index in sorted(texts):
        text = texts[index]
        if text is None:
            continue
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError:  # cannot happen between workers of one version; not fatal
            texts = {**texts, index: None}
            continue
        for family in families:
            shared = family.name.startswith(SHARED_PREFIX)
            if shared and index != answering:
                continue
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation, family.type)
                into.unit = family.unit
            for sample in family.samples:
                labels = sample.labels if shared else {**sample.labels, WORKER_LABEL: str(index)}
                into.samples.append(Sample(sample.name, labels, sample.value, sample.timestamp))
    up = Metric("rail_worker_up", "Whether a worker process answered this scrape.", "gauge")
    for index in sorted(texts):
        value = 0.0 if texts[index] is None else 1.0
        up.samples.append(Sample("rail_worker_up", {WORKER_LABEL: str(index)}, value))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*merged.values(), up]))
    return bytes(generate_latest(registry))

"""Bar charts as server-rendered SVG (no script, no external file): pure arithmetic on a
series of counts, turned into ``twisted.web.template`` tags, so the template engine
escapes every label."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.web.template import Tag, tags

__all__ = ["bar_chart", "bucket"]

_WIDTH = 600
_HEIGHT = 120


def bucket(pairs: Sequence[tuple[int, int]], start: int, end: int, size: int) -> list[int]:
    """Counts of ``(second, count)`` pairs summed into ``size``-second buckets from
    ``start`` (inclusive) to ``end`` (exclusive); seconds outside are ignored."""
    buckets = [0] * max(0, (end - start + size - 1) // size)
    for second, count in pairs:
        if start <= second < end:
            buckets[(second - start) // size] += count
    return buckets


def bar_chart(values: Sequence[int], title: str, description: str) -> Tag:
    """An accessible SVG bar chart of ``values`` (oldest first), scaled to its maximum;
    ``title`` and ``description`` are its accessible name and description."""
    peak = max(values, default=0)
    width = _WIDTH / max(1, len(values))
    bars = []
    for index, value in enumerate(values):
        height = 0.0 if peak == 0 else (_HEIGHT - 10) * value / peak
        bars.append(
            Tag("rect")(
                x=f"{index * width:.1f}",
                y=f"{_HEIGHT - height:.1f}",
                width=f"{max(1.0, width - 1):.1f}",
                height=f"{height:.1f}",
                class_="bar",
            )(Tag("title")(str(value)))
        )
    return tags.figure(
        Tag("svg")(
            Tag("title")(title),
            Tag("desc")(description),
            Tag("line")(x1="0", y1=str(_HEIGHT), x2=str(_WIDTH), y2=str(_HEIGHT), class_="axis"),
            *bars,
            viewBox=f"0 0 {_WIDTH} {_HEIGHT}",
            role="img",
            class_="chart",
            **{"aria-label": title},
        ),
        tags.figcaption(f"{title}: {description} (peak {peak})"),
    )

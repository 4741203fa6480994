"""The listing's search by metadata: ``metadata[key]=value`` (or ``metadata.key=value``)
query parameters, with the bounds of :mod:`rail.mail.meta`."""

from __future__ import annotations

import re
from typing import Any

from rail.mail.meta import MAX_KEY, MAX_KEYS, MAX_TAG, MAX_VALUE

__all__ = ["metadata_args", "tag_problem"]

_PARAMETER = re.compile(r"metadata(?:\[([^\]]*)\]|\.(.*))")
_KEY = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_KEY}}}")


def metadata_args(request: Any) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]] | str:
    """The (key, value) pairs asked for and the parameter names that gave them; or why
    they are unusable."""
    pairs: list[tuple[str, str]] = []
    names: list[str] = []
    for raw, values in request.args.items():
        name = raw.decode("utf-8", "replace")
        match = _PARAMETER.fullmatch(name)
        if match is None:
            continue
        key = match.group(1) if match.group(1) is not None else match.group(2)
        if not _KEY.fullmatch(key):
            return f"{name}: a metadata key is 1 to {MAX_KEY} characters of A-Z a-z 0-9 _ . -"
        value = values[-1].decode("utf-8", "replace")
        if len(value) > MAX_VALUE:
            return f"{name}: longer than {MAX_VALUE} characters"
        pairs.append((key, value))
        names.append(name)
    if len(pairs) > MAX_KEYS:
        return f"at most {MAX_KEYS} metadata parameters"
    return tuple(pairs), tuple(names)


def tag_problem(tag: str | None) -> str | None:
    """Why ``tag`` cannot be searched for, or None."""
    if tag is not None and not 1 <= len(tag) <= MAX_TAG:
        return f"tag: 1 to {MAX_TAG} characters"
    return None

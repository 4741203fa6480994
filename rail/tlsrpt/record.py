"""The ``_smtp._tls`` TXT record of a recipient domain (RFC 8460 §3): where reports go.

Pure. Of the TXT records at ``_smtp._tls.<domain>`` only those starting ``v=TLSRPTv1``
count, and exactly one must (otherwise the domain asks for no reports); its ``rua`` lists
``mailto:`` and ``https:`` URIs, comma-separated. Unknown fields and URI schemes are
ignored, as the RFC's extensibility asks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

__all__ = ["mailto_address", "parse_tlsrpt_records"]

_VERSION = re.compile(r"v\s*=\s*TLSRPTv1\s*(;|$)")
_ADDRESS = re.compile(r"[^@\s<>,;]+@[A-Za-z0-9.-]+")


def parse_tlsrpt_records(texts: Sequence[str]) -> tuple[str, ...]:
    """The report URIs (``mailto:`` and ``https:``) the TXT record texts ask for, in
    their order, or () when the domain asks for none (no record, several, no usable
    ``rua``)."""
    records = [text.strip() for text in texts if _VERSION.match(text.strip())]
    if len(records) != 1:
        return ()
    uris: list[str] = []
    for field in records[0].split(";")[1:]:
        name, _, value = field.partition("=")
        if name.strip().lower() != "rua":
            continue
        for uri in value.split(","):
            uri = uri.strip()
            scheme = uri.partition(":")[0].lower()
            if scheme == "mailto" and mailto_address(uri) is not None:
                uris.append(uri)
            elif scheme == "https" and urlsplit(uri).hostname:
                uris.append(uri)
    return tuple(uris)


def mailto_address(uri: str) -> str | None:
    """The address of a ``mailto:`` URI (no query part), or None if it names none."""
    if not uri.lower().startswith("mailto:"):
        return None
    address = unquote(uri[len("mailto:") :].partition("?")[0]).strip()
    return address if _ADDRESS.fullmatch(address) else None

"""Domain names as DKIM uses them: lower-case A-labels.

A From domain, a configured local domain and a key directory must compare equal when they
name the same domain, whatever the case or script they were written in; DNS publishes
A-labels, so that is the one form Rail stores and signs with (``d=``).
"""

from __future__ import annotations

import re

__all__ = ["a_label"]

_LDH_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_MAX_DOMAIN = 253
_MAX_LABEL = 63


def a_label(domain: str) -> str | None:
    """``domain`` lower-cased, without a root dot, U-labels converted to A-labels.

    ``None`` when it is not a host name (empty labels, characters outside letters, digits
    and hyphens, an IDNA label that does not convert): such a name can never be a key
    directory or a ``d=`` value.
    """
    name = domain.lower().removesuffix(".")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
    if not name or len(name) > _MAX_DOMAIN:
        return None
    for label in name.split("."):
        if len(label) > _MAX_LABEL or not _LDH_LABEL.fullmatch(label):
            return None
    return name

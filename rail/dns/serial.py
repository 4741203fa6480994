"""SOA serials that change exactly when a zone's content changes, also across restarts.

A zone's serial is kept with the digest of the content it numbered, in
``data_dir/dns/serials.json`` (written to a temporary file, fsynced, then renamed over
the old one). Unchanged content keeps its serial; changed content gets
``max(previous + 1, unix time)``, so serials also grow when the state file was lost, as
long as the clock does not go back. Unix time fits the 32-bit serial until 2106.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import attrs

from rail.diskfull import is_disk_full

__all__ = ["SerialEntry", "SerialFile", "next_serial"]

_MAX_SERIAL = 2**32 - 1


@attrs.frozen
class SerialEntry:
    """The serial given to the zone content whose digest is ``digest``."""

    digest: str
    serial: int


def next_serial(previous: SerialEntry | None, digest: str, now: float) -> SerialEntry:
    """The entry for content ``digest`` at ``now``, given the zone's last entry."""
    if previous is not None and previous.digest == digest:
        return previous
    floor = previous.serial + 1 if previous is not None else 1
    return SerialEntry(digest, min(max(floor, int(now)), _MAX_SERIAL))


class SerialFile:
    """The serials of every zone, read from and saved to one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries = _read(path)

    def assign(self, digests: Mapping[str, str], now: float, save: bool = True) -> dict[str, int]:
        """Serials for ``digests`` (zone origin to content digest); the file is rewritten
        only when an entry changed and ``save`` is true (``rail dns records`` reads only)."""
        entries = dict(self._entries)
        for origin, digest in digests.items():
            entries[origin] = next_serial(entries.get(origin), digest, now)
        if save and entries != self._entries:
            try:
                _write(self.path, entries)
            except OSError as error:
                if not is_disk_full(error):
                    raise
                # Served all the same; written at a later refresh, once there is room.
            else:
                self._entries = entries
        return {origin: entries[origin].serial for origin in digests}


def _read(path: Path) -> dict[str, SerialEntry]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        # An unreadable file only costs a serial jump to the current time.
        return {}
    entries = {}
    if isinstance(document, dict):
        for origin, value in document.items():
            if (
                isinstance(value, dict)
                and isinstance(value.get("digest"), str)
                and isinstance(value.get("serial"), int)
            ):
                entries[origin] = SerialEntry(value["digest"], value["serial"])
    return entries


def _write(path: Path, entries: Mapping[str, SerialEntry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        origin: {"digest": entry.digest, "serial": entry.serial}
        for origin, entry in sorted(entries.items())
    }
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".serials-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)

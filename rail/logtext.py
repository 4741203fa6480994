"""twistd's text log, with the same lines formatted at a fraction of the cost.

At 1,000 inbound messages a second Rail writes 2,000 log lines a second, and
twisted.logger's formatter spent 14% of the reactor thread on them: for every line it
re-parses the format string, wraps each field in a proxy that looks for ``()`` calls, and
works out the local timezone from scratch. Here a format string is parsed once, plain
``{name}``/``{name!r:spec}`` fields are looked up directly, and the timestamp is formatted
once per second. Anything else (attribute or index lookups, ``()`` calls, tracebacks,
flattened events, a field that is missing) goes to Twisted's own formatter, so the text is
Twisted's in every case.

``twistd rail`` installs this through twistd's ``logger`` option (see ``rail.tap``), with
the file, stdout and syslog choices that ``-l``, ``-n`` and ``--syslog`` make.
"""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from functools import lru_cache
from string import Formatter
from typing import Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

__all__ = [
    "BufferedOutput",
    "classic_line",
    "event_text",
    "tagged",
    "twistd_observer",
]

_Part = tuple[str, str | None, str | None, str]
_parse = Formatter().parse
_stamp: list[Any] = [None, "-"]  # [whole second, its text]


@lru_cache(maxsize=1024)
def _compiled(log_format: str) -> tuple[_Part, ...] | None:
    """The parts of a format string, or None when one needs Twisted's formatter."""
    parts: list[_Part] = []
    try:
        for literal, field, spec, conversion in _parse(log_format):
            if field is not None and (not field.isidentifier() or "{" in (spec or "")):
                return None
            parts.append((literal, field, conversion, spec or ""))
    except ValueError:
        return None
    return tuple(parts)


def _field(value: object, conversion: str | None, spec: str) -> str:
    if conversion == "r":
        value = repr(value)
    elif conversion == "s":
        value = str(value)
    elif conversion == "a":
        value = ascii(value)
    elif conversion:
        raise ValueError(conversion)
    return format(value, spec)


def _text(event: LogEvent) -> str | None:
    """The event's message, or None when only Twisted's formatter can give it exactly."""
    log_format = event.get("log_format")
    if log_format is None:
        return ""
    if not isinstance(log_format, str):
        return None
    parts = _compiled(log_format)
    if parts is None:
        return None
    pieces: list[str] = []
    for literal, field, conversion, spec in parts:
        pieces.append(literal)
        if field is not None:
            if field not in event:
                return None
            pieces.append(_field(event[field], conversion, spec))
    return "".join(pieces)


def event_text(event: LogEvent) -> str | None:
    """The event's message without the time and system prefix, or None when only
    Twisted's formatter can give it exactly (the JSON format's ``text``)."""
    return _text(event)


def _time(when: float | None) -> str:
    if when is None:
        return "-"
    second = int(when)
    if _stamp[0] != second:  # the offset from UTC can only change on a whole second
        _stamp[1] = formatTime(second, timeFormatRFC3339)
        _stamp[0] = second
    return str(_stamp[1])


def _system(event: LogEvent) -> str:
    system = event.get("log_system")
    if system is not None:
        return str(system)
    level = event.get("log_level")
    return f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"


def classic_line(event: LogEvent) -> str | None:
    """The line twistd writes for an event (``formatEventAsClassicLogText``)."""
    if "log_failure" in event or "log_flattened" in event:
        return formatEventAsClassicLogText(event)
    try:
        text = _text(event)
        if text is None:
            return formatEventAsClassicLogText(event)
        if not text:
            return None
        line = f"{_time(event.get('log_time'))} [{_system(event)}] {text}"
    except Exception:
        return formatEventAsClassicLogText(event)
    return line.replace("\n", "\n\t") + "\n"


class BufferedOutput:
    """A log file or stdout where the delivery, webhook and acceptance lines are batched.

    ``FileLogObserver`` flushes after every line, and twistd's log file is unbuffered, so
    each line was one ``write`` on the reactor thread; measured in bench/deliver.py while
    the store fsyncs on the same disk, those writes took about 40 µs each, more than
    formatting the line, and the delivery log writes two lines per message. So lines
    with ``wait`` (Rail's structured lines, see :mod:`rail.logkv`) are joined and written
    at most ``delay`` seconds later (at once when ``limit`` characters wait); any other
    line is written at once, after what waits, so errors and the lines of a shutdown
    are never held back. What still waits is written at exit. The batched output is
    appended to ``keep``, for a caller that writes lines of its own to it (the lines of
    worker processes, see :mod:`rail.workers`). ``schedule(delay, f)``
    runs ``f`` later on the reactor thread; it and :meth:`write` may be called from any
    thread.
    """

    def __init__(
        self,
        out: Any,
        schedule: Callable[[float, Callable[[], None]], object],
        delay: float = 0.1,
        limit: int = 64 * 1024,
    ) -> None:
        self._out = out
        self._schedule = schedule
        self._delay = delay
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0
        self._pending = False
        self._lock = threading.Lock()
        self._writing = threading.Lock()

    def write(self, text: str, wait: bool = False) -> None:
        """Write ``text`` now, or with ``wait`` in the next batch."""
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            now = not wait or self._size >= self._limit
            start = not now and not self._pending
            if start:
                self._pending = True
        if now:
            self.flush()
        elif start:
            self._schedule(self._delay, self.flush)

    def flush(self) -> None:
        """Write what waits, in order."""
        with self._writing:
            with self._lock:
                parts, self._parts, self._size, self._pending = self._parts, [], 0, False
            if parts:
                self._out.write("".join(parts))
                self._out.flush()


@implementer(ILogObserver)
class _BatchingObserver:
    """``FileLogObserver`` for a :class:`BufferedOutput`: Rail's structured lines wait."""

    def __init__(self, out: BufferedOutput, line: Callable[[LogEvent], str | None]) -> None:
        self._out = out
        self._line = line

    def __call__(self, event: LogEvent) -> None:
        text = self._line(event)
        if text:
            self._out.write(text, wait="rail_event" in event)


def twistd_observer(
    options: Mapping[str, Any],
    call_from_thread: Callable[[Callable[[], object]], object],
    line: Callable[[LogEvent], str | None] = classic_line,
    schedule: Callable[[float, Callable[[], None]], object] | None = None,
    keep: list[BufferedOutput] | None = None,
) -> Callable[[], Any]:
    """A factory for twistd's ``logger`` option: twistd's own choice of output, each event
    written as ``line`` makes it (this module's text lines by default; the JSON format's
    :func:`rail.logjson.json_line` for ``logging.format: json``).

    The choice is ``UnixAppLogger``'s: syslog with ``--syslog`` (unchanged, syslog has its
    own format), stdout for ``-l -`` or ``-n`` without ``-l``, otherwise the ``-l`` file
    (default ``twistd.log``), rotated on SIGUSR1 as twistd does (``call_from_thread`` is the
    reactor's, which the rotation is handed to from the signal handler). With
    ``schedule`` Rail's structured lines are written in batches (:class:`BufferedOutput`),
    flushed by any other line, at exit and before a rotation; that output is appended to
    ``keep``, for a caller that writes lines of its own to it (a supervisor's workers').
    """

    def build() -> Any:
        if options.get("syslog"):
            from twisted.python import syslog

            emit = syslog.SyslogObserver(options.get("prefix", "")).emit
            return LegacyLogObserverWrapper(emit)  # type: ignore[arg-type]
        filename = options.get("logfile") or ""
        nodaemon = bool(options.get("nodaemon"))
        out: Any
        if filename == "-":
            if not nodaemon:
                sys.exit("Daemons cannot log to stdout, exiting!")
            out = sys.stdout
        elif nodaemon and not filename:
            out = sys.stdout
        else:
            out = LogFile.fromFullPath(filename or "twistd.log")
        if schedule is not None:
            buffered = BufferedOutput(out, schedule)
            if keep is not None:
                keep.append(buffered)
            atexit.register(buffered.flush)
            if isinstance(out, LogFile):
                _rotate_on_sigusr1(out, call_from_thread, buffered.flush)
            return _BatchingObserver(buffered, line)
        if isinstance(out, LogFile):
            _rotate_on_sigusr1(out, call_from_thread)
        return FileLogObserver(out, line)

    return build


def _rotate_on_sigusr1(
    log_file: LogFile,
    call_from_thread: Callable[[Callable[[], object]], object],
    flush: Callable[[], None] = lambda: None,
) -> None:
    """Rotate on SIGUSR1 unless something else handles it, as twistd's file log does;
    what waits in a batch goes to the file being rotated out."""
    if signal.getsignal(signal.SIGUSR1):
        return

    def rotated() -> None:
        flush()
        log_file.rotate()

    def rotate(signum: int, frame: object) -> None:
        call_from_thread(rotated)

    signal.signal(signal.SIGUSR1, rotate)


def tagged(line: Callable[[LogEvent], str | None], worker: int) -> Callable[[LogEvent], str | None]:
    """``line``, for worker process ``worker``: text lines name it after the namespace and
    level (``[rail.smtp#info w1]``), JSON lines in a ``worker`` field."""
    tag = f"w{worker}"

    def line_of_worker(event: LogEvent) -> str | None:
        return line({**event, "log_system": f"{_system(event)} {tag}", "rail_worker": worker})

    return line_of_worker

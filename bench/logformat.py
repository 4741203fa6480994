"""Log format benchmark: the cost of the delivery log per recipient, text and JSON.

Builds the events the scheduler logs for one sent recipient (``delivery.attempt`` and
``delivery.final``) and writes them through twistd's file observer with each formatter
(Rail's text lines, Rail's JSON lines, Twisted's ``jsonFileLogObserver`` for comparison)
into /dev/null. Prints microseconds per recipient (both lines). Run by hand:

    python bench/logformat.py --recipients 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from twisted.logger import FileLogObserver, Logger, LogPublisher, jsonFileLogObserver

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rail.delivery.log import Peer, log_attempt, log_final
from rail.logjson import json_line
from rail.logtext import classic_line
from rail.store.model import DeliveryJob, DueRecipient, JobResult, RecipientUpdate

_JOB = DeliveryJob(
    message_id="01M91G3A5FHQKNB35E2GDKHFH7",
    domain="d4.bench",
    client="app",
    sender="app@rail.test",
    received_at=1_800_000_000.0,
    smtputf8=False,
    eight_bit=False,
    recipients=(DueRecipient(0, "user2204@d4.bench", 0, None),),
    data=b"",
)
_RESULT = JobResult(
    "01M91G3A5FHQKNB35E2GDKHFH7",
    1_800_000_002.7,
    (RecipientUpdate(0, "sent", "250 2.0.0 Ok: queued as 4ZxYz", "mx.bench"),),
)
_PEER = Peer("mx.bench", "127.0.0.1", "TLSv1.3")


def _run(observer: object, recipients: int) -> float:
    """Seconds per recipient for both lines through ``observer``."""
    import rail.delivery.log as module

    module._log = Logger(namespace="rail.delivery", observer=LogPublisher(observer))  # type: ignore[arg-type]
    started = time.perf_counter()
    for _ in range(recipients):
        log_attempt(_JOB, _RESULT, _PEER, 0.096)
        log_final(_JOB, _RESULT)
    return (time.perf_counter() - started) / recipients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    args = parser.parse_args()
    with open("/dev/null", "w", encoding="utf-8") as null:
        choices = {
            "no observer": lambda event: None,
            "text (logging.format: text)": FileLogObserver(null, classic_line),
            "json (logging.format: json)": FileLogObserver(null, json_line),
            "twisted jsonFileLogObserver": jsonFileLogObserver(null),
        }
        for name, observer in choices.items():
            _run(observer, min(1000, args.recipients))  # warm up caches
            seconds = _run(observer, args.recipients)
            print(f"{name:30s} {seconds * 1e6:7.1f} µs per recipient (attempt + final)")


if __name__ == "__main__":
    main()

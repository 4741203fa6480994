"""The queue store as a service: started with Rail, closed after the listeners.

It is the first child of the root service, so Twisted stops it last: by then no SMTP
session or API request can submit anything, and closing waits for every acceptance
already in flight to be committed and answered.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service

from rail.store.queuestore import QueueStore

__all__ = ["StoreService"]


class StoreService(Service):
    def __init__(self, store: QueueStore) -> None:
        self.store = store
        self.setName("store")

    def startService(self) -> None:
        super().startService()
        self.store.start()

    def stopService(self) -> Any:
        super().stopService()
        return self.store.close()

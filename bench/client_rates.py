"""Cost of the per-client rate limits on the reactor: check + record per message.

Usage: python bench/client_rates.py [MESSAGES] [CLIENTS]
Prints microseconds per message with every limit set, against the same loop with none,
over a simulated day (the clock advances so the windows slide and expire).
"""

from __future__ import annotations

import sys
import time

from rail.config.schema import ClientLimits
from rail.policy.rates import ClientRates


class _Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def seconds(self) -> float:
        return self.now


def run(messages: int, clients: int, limits: ClientLimits) -> float:
    clock = _Clock()
    rates = ClientRates(clock, lambda client: limits)
    names = [f"client{i}" for i in range(clients)]
    step = 86400.0 / messages
    started = time.perf_counter()
    for i in range(messages):
        client = names[i % clients]
        if rates.check_message(client, 2) is None:
            rates.record(client, 2)
        clock.now += step
    return (time.perf_counter() - started) / messages * 1e6


def main() -> None:
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    high = 10**9
    limited = ClientLimits(
        messages_per_minute=high,
        messages_per_hour=high,
        messages_per_day=high,
        recipients_per_day=high,
    )
    for label, limits in (("no limits", ClientLimits()), ("all four limits", limited)) * 2:
        micros = run(messages, clients, limits)
        print(f"{label:16} {messages} messages, {clients} clients: {micros:.2f} us/message")


if __name__ == "__main__":
    main()

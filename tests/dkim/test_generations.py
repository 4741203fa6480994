"""Which generation signs a message, which ones stay published, and the state file."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from rail.dkim.generations import (
    Generation,
    decode_state,
    encode_state,
    needed,
    new_name,
    signing_generation,
)

_DAY = 86400.0
NOW = 1795237702.0  # Sat, 21 Nov 2026 04:28:22 UTC
G1 = Generation(name="r20261121", activated_at=1000.0)
G2 = Generation(name="r20261122", activated_at=2000.0)
G3 = Generation(name="r20261123", activated_at=3000.0)


class NameTests(SynchronousTestCase):
    def test_date(self) -> None:
        """A generation is named after its UTC date, with selectors ending e and r."""
        generation = Generation(name=new_name((), NOW), activated_at=NOW)
        self.assertEqual(generation.name, "r20261121")
        self.assertEqual(generation.ed25519_selector, "r20261121e")
        self.assertEqual(generation.rsa_selector, "r20261121r")

    def test_same_day(self) -> None:
        """Later rotations the same day get -2, -3... so names stay unique."""
        self.assertEqual(new_name(["r20261121"], NOW), "r20261121-2")
        self.assertEqual(new_name(["r20261121", "r20261121-2"], NOW), "r20261121-3")
        self.assertEqual(new_name(["r20261121"], NOW + _DAY), "r20261122")

    def test_invalid_name(self) -> None:
        """A name that would not make a DNS label is refused."""
        for name in ("", "R1", "a_b", "-a", "a" * 63, "a.b"):
            with self.assertRaises(ValueError, msg=name):
                Generation(name=name, activated_at=0.0)


class SigningGenerationTests(SynchronousTestCase):
    def test_by_received_at(self) -> None:
        """The generation activated last at or before the message was received signs it;
        a message older than every generation gets the first."""
        generations = (G1, G2, G3)
        for received_at, expected in (
            (500.0, G1),
            (1000.0, G1),
            (1999.999, G1),
            (2000.0, G2),
            (2999.0, G2),
            (3000.0, G3),
            (10**10, G3),
        ):
            self.assertEqual(signing_generation(generations, received_at), expected, received_at)

    def test_equal_activation(self) -> None:
        """Of two generations activated at the same moment, the later one signs."""
        twin = Generation(name="r20261121-2", activated_at=1000.0)
        self.assertEqual(signing_generation((G1, twin), 1000.0), twin)


class NeededTests(SynchronousTestCase):
    def test_nothing_pending(self) -> None:
        """With an empty queue only the newest generation is published."""
        self.assertEqual(needed((G1, G2, G3), None), [G3])

    def test_pending_before_successor(self) -> None:
        """A generation stays while the oldest pending message predates its successor."""
        self.assertEqual(needed((G1, G2, G3), 1999.999), [G1, G2, G3])
        self.assertEqual(needed((G1, G2, G3), 500.0), [G1, G2, G3])
        self.assertEqual(needed((G1, G2, G3), 2000.0), [G2, G3])
        self.assertEqual(needed((G1, G2, G3), 2999.0), [G2, G3])
        self.assertEqual(needed((G1, G2, G3), 3000.0), [G3])

    def test_single(self) -> None:
        """One generation is always published; none gives nothing."""
        self.assertEqual(needed((G1,), None), [G1])
        self.assertEqual(needed((), 5.0), [])


class StateTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """What is encoded decodes to the same generations."""
        self.assertEqual(decode_state(encode_state((G1, G2))), (G1, G2))

    def test_invalid(self) -> None:
        """Broken JSON, unknown keys, wrong types, duplicate names and generations out of
        order are ValueErrors with a message."""
        good = {"name": "r20261121", "activated_at": 1.0}
        for document in (
            b"{",
            b"\xff",
            json.dumps([]).encode(),
            json.dumps({"version": 1}).encode(),
            json.dumps({"version": 2, "generations": [good]}).encode(),
            json.dumps({"version": 1, "generations": []}).encode(),
            json.dumps({"version": 1, "generations": [good], "x": 1}).encode(),
            json.dumps({"version": 1, "generations": [{"name": "r1"}]}).encode(),
            json.dumps({"version": 1, "generations": [{**good, "name": "R!"}]}).encode(),
            json.dumps({"version": 1, "generations": [{**good, "activated_at": "x"}]}).encode(),
            json.dumps({"version": 1, "generations": [{**good, "activated_at": True}]}).encode(),
            b'{"version": 1, "generations": [{"name": "r1", "activated_at": NaN}]}',
            json.dumps({"version": 1, "generations": [good, good]}).encode(),
            json.dumps(
                {
                    "version": 1,
                    "generations": [
                        {"name": "r2", "activated_at": 2.0},
                        {"name": "r1", "activated_at": 1.0},
                    ],
                }
            ).encode(),
        ):
            with self.assertRaises(ValueError, msg=document):
                decode_state(document)

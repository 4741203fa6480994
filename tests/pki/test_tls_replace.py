"""New server material for running listeners: contexts built off the reactor thread."""

from __future__ import annotations

from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.tls import ServerMaterial, ServerTLS, replace_all
from tests.acme.helpers import material
from tests.support.threads import FakeThreads


class ReplaceAllTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.listeners = [ServerTLS(material(), None), ServerTLS(material(), None)]
        self.threads = FakeThreads()

    def contexts(self) -> list[SSL.Context]:
        return [listener.getContext() for listener in self.listeners]

    def test_built_in_a_thread_then_installed(self) -> None:
        """The new contexts are built by the thread runner (nothing changes before it
        has run), then every listener gets its new one."""
        before = self.contexts()
        done = replace_all(self.listeners, material(("new.rail.test",)), self.threads)
        self.assertEqual(len(self.threads.queued), 1)
        self.assertEqual(self.contexts(), before)
        self.threads.finish()
        self.successResultOf(done)
        after = self.contexts()
        self.assertTrue(all(new is not old for new, old in zip(after, before, strict=True)))

    def test_unusable_material_changes_no_listener(self) -> None:
        """A key that does not match its certificate fails in the thread; no listener
        is given anything and the Deferred fails."""
        before = self.contexts()
        mismatched = ServerMaterial(chain=material().chain, key=material().key)
        done = replace_all(self.listeners, mismatched, self.threads)
        self.threads.finish()
        self.failureResultOf(done, SSL.Error)
        self.assertEqual(self.contexts(), before)

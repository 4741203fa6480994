"""Sessions under each TLS requirement over real loopback sockets and real TLS: SNI,
verification against the MX name, what fails and how it is reported, and that a
required-TLS failure never falls back to plaintext."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto
from twisted.internet.ssl import CertificateOptions
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.outcome import SessionError
from rail.delivery.stspolicy import STSPolicy
from rail.delivery.tlspolicy import OPPORTUNISTIC, TLSRequirement, choose_requirement
from rail.delivery.tlsreport import TLSOutcome
from rail.delivery.tlsverify import TLSContexts
from rail.pki.ca import CertificateAuthority, create_ca
from rail.pki.issue import issue_server_certificate
from rail.pki.keys import generate_private_key
from rail.pki.tls import ServerMaterial, server_options
from tests.delivery.test_connect import MESSAGE, RealSocketTestCase, _Servers, codes

_MX = "mx1.dest.example"
_ENFORCE = STSPolicy(mode="enforce", max_age=86400, mx=(_MX,), text="version: STSv1\n")
_TESTING = STSPolicy(mode="testing", max_age=86400, mx=(_MX,), text="version: STSv1\n")


class _Sink:
    def __init__(self) -> None:
        self.outcomes: list[TLSOutcome] = []

    def record(self, outcome: TLSOutcome) -> None:
        self.outcomes.append(outcome)


def _material(ca: CertificateAuthority, name: str, expired: bool = False) -> ServerMaterial:
    key = generate_private_key("ecdsa-p256")
    now = datetime.now(UTC) - (timedelta(days=10) if expired else timedelta(0))
    validity = timedelta(days=1) if expired else timedelta(days=30)
    cert = issue_server_certificate(ca, name, (), key.public_key(), now, validity)
    return ServerMaterial(chain=(cert, ca.certificate), key=key)


def _ca(name: str = "TLS connect test CA") -> CertificateAuthority:
    return create_ca(name, datetime.now(UTC), "ecdsa-p256")


class PolicySessionTests(RealSocketTestCase):
    def setUp(self) -> None:
        self.ca = _ca()
        self.sink = _Sink()
        self.server_names: list[bytes | None] = []

    def tls(self, material: ServerMaterial) -> CertificateOptions:
        """Server options that record the SNI each client sent."""
        options = server_options(material, None)
        options.getContext().set_tlsext_servername_callback(
            lambda connection: self.server_names.append(connection.get_servername())
        )
        return options

    def contexts(self, ca: CertificateAuthority | None = None) -> TLSContexts:  # type: ignore[override]
        path = Path(self.mktemp())
        path.write_bytes((ca or self.ca).certificate.public_bytes(Encoding.PEM))
        return TLSContexts(str(path), system_roots=False)

    async def attempt(self, servers: _Servers, requirement: TLSRequirement, **kwargs: Any) -> Any:
        port = await self.serve(servers)
        kwargs.setdefault("contexts", self.contexts())
        return await self.open(port, requirement, server_name=_MX, outcomes=self.sink, **kwargs)

    def results(self) -> list[tuple[str | None, str, str]]:
        return [(o.mx_host, o.policy_type, o.result) for o in self.sink.outcomes]

    async def test_opportunistic_sends_sni(self) -> None:
        """Opportunistic TLS names the MX host in SNI, verifies nothing (a certificate
        for another name from an unknown CA is fine) and reports a no-policy success."""
        servers = _Servers(tls=self.tls(_material(_ca("other"), "elsewhere.example")))
        requirement = choose_requirement("dest.example", _MX, sts=None)
        session = await self.attempt(servers, requirement)
        self.assertTrue(session.tls_active)
        await session.quit()
        self.assertEqual(self.server_names, [_MX.encode()])
        self.assertEqual(self.results(), [(_MX, "no-policy-found", "success")])

    async def test_enforce_verified(self) -> None:
        """enforce and a certificate for the MX name from a trusted CA: the session
        carries mail, SNI was the MX name, a success is reported with the policy."""
        servers = _Servers(tls=self.tls(_material(self.ca, _MX)))
        requirement = choose_requirement("dest.example", _MX, sts=_ENFORCE, sts_id="1")
        session = await self.attempt(servers, requirement)
        self.assertEqual(codes(await session.send(MESSAGE)), [250, 250])
        await session.quit()
        self.assertEqual(self.server_names, [_MX.encode()])
        self.assertEqual(self.results(), [(_MX, "sts", "success")])
        self.assertEqual(self.sink.outcomes[0].policy_domain, "dest.example")
        self.assertEqual(self.sink.outcomes[0].receiving_ip, "127.0.0.1")

    async def test_enforce_failures(self) -> None:
        """enforce: a certificate for another name, an expired one and one from an
        unknown CA each defer (451 4.7.5 naming the MTA-STS policy), are reported with
        their RFC 8460 result type, never carry a message, and are never retried in
        plaintext (one connection each)."""
        cases = [
            (_material(self.ca, "other.dest.example"), "certificate-host-mismatch"),
            (_material(self.ca, _MX, expired=True), "certificate-expired"),
            (_material(_ca("unknown"), _MX), "certificate-not-trusted"),
        ]
        requirement = choose_requirement("dest.example", _MX, sts=_ENFORCE, sts_id="1")
        for material, result in cases:
            servers = _Servers(tls=self.tls(material))
            with capturedLogs() as events:
                with self.assertRaises(SessionError) as caught:
                    await self.attempt(servers, requirement)
            reply = caught.exception.reply
            self.assertEqual((reply.code, reply.enhanced, reply.remote), (451, "4.7.5", False))
            self.assertTrue(
                reply.text.startswith(f"MTA-STS policy of dest.example (enforce): {_MX}: "),
                reply.text,
            )
            self.assertEqual(servers.connections, 1)
            self.assertEqual(servers.session.delivered, [])
            self.assertEqual(self.results()[-1], (_MX, "sts", result))
            # Nothing logged here (the scheduler logs the reply), least of all a traceback.
            ours = [e for e in events if e.get("log_namespace", "").startswith("rail.")]
            self.assertEqual(ours, [])
            self.assertEqual([e for e in events if "log_failure" in e], [])

    async def test_enforce_without_starttls(self) -> None:
        """enforce and a server that offers no STARTTLS: 451 4.7.4 naming the policy,
        reported as starttls-not-supported, nothing sent."""
        servers = _Servers()
        requirement = choose_requirement("dest.example", _MX, sts=_ENFORCE)
        with self.assertRaises(SessionError) as caught:
            await self.attempt(servers, requirement)
        self.assertEqual(caught.exception.reply.enhanced, "4.7.4")
        self.assertIn("MTA-STS policy of dest.example (enforce)", caught.exception.reply.text)
        self.assertEqual(self.results(), [(_MX, "sts", "starttls-not-supported")])
        self.assertEqual(servers.session.delivered, [])

    async def test_testing_reports_and_delivers(self) -> None:
        """testing and a certificate for another name: the session carries mail (TLS
        still on) and the mismatch is reported and logged."""
        servers = _Servers(tls=self.tls(_material(self.ca, "other.dest.example")))
        requirement = choose_requirement("dest.example", _MX, sts=_TESTING)
        with capturedLogs() as events:
            session = await self.attempt(servers, requirement)
        self.assertTrue(session.tls_active)
        self.assertEqual(codes(await session.send(MESSAGE)), [250, 250])
        await session.quit()
        self.assertEqual(self.results(), [(_MX, "sts", "certificate-host-mismatch")])
        self.assertTrue(any("testing mode" in e["log_format"] for e in events))

    async def test_testing_unlisted_host_reported(self) -> None:
        """testing and an MX host the policy does not list: delivered, reported as a
        validation failure although its certificate is fine."""
        servers = _Servers(tls=self.tls(_material(self.ca, _MX)))
        policy = STSPolicy(mode="testing", max_age=1, mx=("other.dest.example",))
        requirement = choose_requirement("dest.example", _MX, sts=policy)
        session = await self.attempt(servers, requirement)
        self.assertTrue(session.tls_active)
        await session.quit()
        self.assertEqual(self.results(), [(_MX, "sts", "validation-failure")])

    async def test_testing_without_starttls_delivers(self) -> None:
        """testing and no STARTTLS: delivered in plaintext, reported."""
        servers = _Servers()
        requirement = choose_requirement("dest.example", _MX, sts=_TESTING)
        session = await self.attempt(servers, requirement)
        self.assertFalse(session.tls_active)
        self.assertEqual(codes(await session.send(MESSAGE)), [250, 250])
        await session.quit()
        self.assertEqual(self.results(), [(_MX, "sts", "starttls-not-supported")])

    async def test_smarthost_by_address_verifies_the_address(self) -> None:
        """A relay named by an IP address: no SNI (RFC 6066 forbids addresses), and the
        certificate must carry that address."""
        key = generate_private_key("ecdsa-p256")
        now = datetime.now(UTC)
        cert = issue_server_certificate(
            self.ca, "relay.example", ("127.0.0.1",), key.public_key(), now
        )
        servers = _Servers(tls=self.tls(ServerMaterial(chain=(cert, self.ca.certificate), key=key)))
        requirement = TLSRequirement(mode="smarthost-required", verify_names=("127.0.0.1",))
        port = await self.serve(servers)
        session = await self.open(
            port, requirement, server_name="127.0.0.1", contexts=self.contexts()
        )
        self.assertTrue(session.tls_active)
        await session.quit()
        self.assertEqual(self.server_names, [None])


def _pump(a: SSL.Connection, b: SSL.Connection) -> None:
    """Move TLS records between two memory-BIO connections until both are idle."""
    moved = True
    while moved:
        moved = False
        for source, sink in ((a, b), (b, a)):
            try:
                data = source.bio_read(65536)
            except SSL.WantReadError:
                continue
            sink.bio_write(data)
            moved = True


def _renegotiation(client: SSL.Context) -> tuple[list[str], bool]:
    """A TLS 1.2 server asks ``client`` to renegotiate: the server's errors, and whether
    a renegotiation is still pending."""
    ca = _ca()
    material = _material(ca, "mx.example")
    server_context = SSL.Context(SSL.TLS_SERVER_METHOD)
    server_context.set_max_proto_version(SSL.TLS1_2_VERSION)
    server_context.use_privatekey(crypto.PKey.from_cryptography_key(material.key))  # type: ignore[arg-type]
    server_context.use_certificate(crypto.X509.from_cryptography(material.chain[0]))
    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    connection = SSL.Connection(client, None)
    connection.set_connect_state()
    for _ in range(5):
        for side in (connection, server):
            try:
                side.do_handshake()
            except SSL.WantReadError:
                pass
        _pump(connection, server)
    server.renegotiate()
    try:
        server.do_handshake()
    except SSL.WantReadError:
        pass
    _pump(connection, server)
    errors: list[str] = []
    for _ in range(4):
        try:
            connection.send(b"ping")  # the client takes part in a renegotiation here
        except SSL.WantReadError:
            pass
        try:
            connection.recv(100)
        except SSL.WantReadError:
            pass
        _pump(connection, server)
        try:
            server.recv(100)
        except SSL.WantReadError:
            pass
        except SSL.Error as e:
            errors.append(str(e))
            break
        _pump(connection, server)
    return errors, server.renegotiate_pending()


class ContextTests(SynchronousTestCase):
    def test_renegotiation_refused(self) -> None:
        """Both client contexts refuse TLS 1.2 renegotiation (OP_NO_RENEGOTIATION): a
        server that asks gets "no renegotiation", while a plain OpenSSL client context
        renegotiates (the control)."""
        contexts = TLSContexts(system_roots=False)
        for context in (contexts.unverified, contexts.verifying):
            self.assertTrue(context.set_options(0) & SSL.OP_NO_RENEGOTIATION)
        errors, _ = _renegotiation(contexts.unverified)
        self.assertEqual(len(errors), 1)
        self.assertIn("no renegotiation", errors[0])
        self.assertEqual(_renegotiation(SSL.Context(SSL.TLS_CLIENT_METHOD)), ([], False))

    def test_unreadable_ca_file(self) -> None:
        """A CA file that is not PEM fails when the contexts are built (at start)."""
        path = Path(self.mktemp())
        path.write_text("not a certificate\n")
        with self.assertRaises(SSL.Error):
            TLSContexts(str(path))

    def test_opportunistic_default(self) -> None:
        """OPPORTUNISTIC checks nothing: the unverified context."""
        check = TLSContexts(system_roots=False).check(OPPORTUNISTIC, "mx.example")
        self.assertEqual(check.server_name, b"mx.example")
        self.assertFalse(check.verified)

    def test_dane_sni_is_the_tlsa_base_domain(self) -> None:
        """Under DANE, SNI is the first DANE name, the TLSA base domain (RFC 7672 §8.1):
        the CNAME-expanded name when its records were used, else the MX host."""
        contexts = TLSContexts(system_roots=False)
        expanded = TLSRequirement(mode="dane", verify_names=("smtp.provider.test", _MX))
        self.assertEqual(contexts.check(expanded, _MX).server_name, b"smtp.provider.test")
        plain = TLSRequirement(mode="dane", verify_names=(_MX,))
        self.assertEqual(contexts.check(plain, _MX).server_name, _MX.encode())
        sts = TLSRequirement(mode="sts-enforce", verify_names=("other.example",))
        self.assertEqual(contexts.check(sts, _MX).server_name, _MX.encode())

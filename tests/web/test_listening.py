"""
Tests for :obj:`ccm.web.listening`: listeners from the configuration turned into
Twisted endpoints, and TLS material loaded into server options.
"""

from __future__ import annotations

import os

from OpenSSL import SSL, crypto
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
)
from twisted.internet.defer import succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from ccm.config.model import AddressListener, EndpointListener, TLSConfig
from ccm.web.listening import (
    ListenError,
    ListeningService,
    endpoint_for,
    tls_options,
)
from tests.certs import TestPKI, make_pki

_PKI: TestPKI | None = None


def pki() -> TestPKI:
    """
    One certificate hierarchy for the whole module (key generation is the
    slow part).
    """
    global _PKI
    if _PKI is None:
        _PKI = make_pki()
    return _PKI


def handshake(
    server_context: SSL.Context, root_pem: bytes, max_version: int | None = None
) -> SSL.Connection:
    """
    Run a TLS handshake in memory between a server using
    ``server_context`` and a client that trusts only ``root_pem`` and checks
    the host name ``localhost``; return the client connection.

    :raises SSL.Error: when the handshake fails.
    """
    client_context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    store = client_context.get_cert_store()
    assert store is not None
    store.add_cert(crypto.load_certificate(crypto.FILETYPE_PEM, root_pem))
    client_context.set_verify(SSL.VERIFY_PEER, lambda *args: args[-1])
    if max_version is not None:
        client_context.set_max_proto_version(max_version)
    client = SSL.Connection(client_context, None)
    client.set_tlsext_host_name(b"localhost")
    client.set_connect_state()
    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    for _ in range(20):
        for connection in (client, server):
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                pass
        for source, target in ((client, server), (server, client)):
            try:
                target.bio_write(source.bio_read(65536))
            except SSL.WantReadError:
                pass
        if client.get_peer_certificate() is not None and server.get_protocol_version_name():
            try:
                client.do_handshake()
                server.do_handshake()
                return client
            except SSL.WantReadError:
                continue
    raise AssertionError("the handshake did not finish")


class TLSOptionsTests(SynchronousTestCase):
    """
    :obj:`tls_options` serves the configured chain with its key, and refuses
    material that cannot work.
    """

    def write(self, name: str, data: bytes) -> str:
        """
        Write ``data`` to a new file called ``name`` and return its path.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def test_files_with_chain(self) -> None:
        """
        A certificate file holding the server certificate and its
        intermediate is served whole: a client that trusts only the root
        verifies it, for the name ``localhost``.
        """
        material = pki()
        options = tls_options(
            TLSConfig(
                certificate_path=self.write("chain.pem", material.server_pem + material.intermediate_pem),
                key_path=self.write("key.pem", material.server_key_pem),
            )
        )
        client = handshake(options.getContext(), material.root_pem)
        chain = client.get_peer_cert_chain()
        assert chain is not None
        self.assertEqual(
            [c.get_subject().CN for c in chain], ["localhost", "ccm test intermediate"]
        )

    def test_inline_pem(self) -> None:
        """
        Inline certificate and key text (the sing-box arrays of lines,
        joined) work like files.
        """
        material = pki()
        options = tls_options(
            TLSConfig(
                certificate_pem=(material.server_pem + material.intermediate_pem).decode("ascii"),
                key_pem=material.server_key_pem.decode("ascii"),
            )
        )
        client = handshake(options.getContext(), material.root_pem)
        self.assertEqual(client.get_peer_certificate().get_subject().CN, "localhost")  # type: ignore[union-attr]

    def test_minimum_version(self) -> None:
        """
        ``min_version`` 1.3 refuses a client that can only speak TLS 1.2,
        which the default options accept.
        """
        material = pki()
        default = tls_options(
            TLSConfig(
                certificate_pem=(material.server_pem + material.intermediate_pem).decode("ascii"),
                key_pem=material.server_key_pem.decode("ascii"),
            )
        )
        handshake(default.getContext(), material.root_pem, SSL.TLS1_2_VERSION)
        options = tls_options(
            TLSConfig(
                certificate_pem=(material.server_pem + material.intermediate_pem).decode("ascii"),
                key_pem=material.server_key_pem.decode("ascii"),
                min_version="1.3",
            )
        )
        self.assertRaises(
            SSL.Error, handshake, options.getContext(), material.root_pem, SSL.TLS1_2_VERSION
        )

    def test_mismatched_key(self) -> None:
        """
        A key that does not belong to the certificate is refused before
        anything listens, with a message saying so.
        """
        material = pki()
        error = self.assertRaises(
            ListenError,
            tls_options,
            TLSConfig(
                certificate_pem=material.server_pem.decode("ascii"),
                key_pem=material.other_key_pem.decode("ascii"),
            ),
        )
        self.assertEqual(str(error), "the TLS key does not match the certificate")

    def test_not_pem(self) -> None:
        """
        A certificate file without a PEM certificate, or a key that does not
        parse, is refused with a message naming the problem.
        """
        material = pki()
        error = self.assertRaises(
            ListenError,
            tls_options,
            TLSConfig(certificate_pem="hello", key_pem=material.server_key_pem.decode("ascii")),
        )
        self.assertIn("no PEM certificate", str(error))
        error = self.assertRaises(
            ListenError,
            tls_options,
            TLSConfig(certificate_pem=material.server_pem.decode("ascii"), key_pem="not a key"),
        )
        self.assertIn("cannot load the TLS certificate or key", str(error))

    def test_unreadable_file(self) -> None:
        """
        A certificate file that vanished after the configuration was checked
        is reported with its path.
        """
        missing = os.path.abspath(self.mktemp())
        error = self.assertRaises(
            ListenError, tls_options, TLSConfig(certificate_path=missing, key_path=missing)
        )
        self.assertIn(missing, str(error))

    def test_key_not_in_message(self) -> None:
        """
        No error message quotes key material.
        """
        material = pki()
        broken_key = material.server_key_pem.decode("ascii").replace("A", "!")
        error = self.assertRaises(
            ListenError,
            tls_options,
            TLSConfig(certificate_pem=material.server_pem.decode("ascii"), key_pem=broken_key),
        )
        body_line = material.server_key_pem.decode("ascii").splitlines()[1]
        self.assertNotIn(body_line[:20], str(error))


class EndpointForTests(SynchronousTestCase):
    """
    :obj:`endpoint_for` builds the endpoint each kind of listener describes.
    """

    def test_endpoint_string(self) -> None:
        """
        An endpoint string is parsed by Twisted as written.
        """
        endpoint = endpoint_for(MemoryReactor(), EndpointListener("tcp:8123:interface=127.0.0.1"))
        self.assertIsInstance(endpoint, TCP4ServerEndpoint)

    def test_address_listeners(self) -> None:
        """
        The sing-box listen fields give a TCP endpoint of the address's
        family, or a TLS endpoint when ``tls`` is set.
        """
        reactor = MemoryReactor()
        self.assertIsInstance(endpoint_for(reactor, AddressListener("0.0.0.0", 8080)), TCP4ServerEndpoint)
        self.assertIsInstance(endpoint_for(reactor, AddressListener("::", 8080)), TCP6ServerEndpoint)
        material = pki()
        tls = TLSConfig(
            certificate_pem=material.server_pem.decode("ascii"),
            key_pem=material.server_key_pem.decode("ascii"),
        )
        self.assertIsInstance(endpoint_for(reactor, AddressListener("127.0.0.1", 8443, tls)), SSL4ServerEndpoint)

    def test_listening_binds(self) -> None:
        """
        A :obj:`ListeningService` listens where its endpoint says when started.
        """
        reactor = MemoryReactor()
        endpoint = endpoint_for(reactor, AddressListener("127.0.0.1", 8124))
        service = ListeningService(endpoint, Factory.forProtocol(Protocol))
        service.privilegedStartService()
        self.assertEqual([(p[0], p[3]) for p in reactor.tcpServers], [(8124, "127.0.0.1")])

    def test_abandon(self) -> None:
        """
        :obj:`ListeningService.abandon` stops a port that is listening, and does
        nothing for a service that never started.
        """

        class Port:
            stopped = False

            def stopListening(self) -> None:
                self.stopped = True

        port = Port()

        class Endpoint:
            def listen(self, factory: object) -> object:
                return succeed(port)

        service = ListeningService(Endpoint(), Factory.forProtocol(Protocol))  # type: ignore[arg-type]
        service.abandon()
        self.assertFalse(port.stopped)
        service.privilegedStartService()
        service.abandon()
        self.assertTrue(port.stopped)

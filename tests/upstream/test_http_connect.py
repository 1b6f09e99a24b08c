"""
Tests for :obj:`ccm.upstream.http_connect`: the HTTP CONNECT handshake, on a
memory transport, through :obj:`ccm.upstream.tunnel.DetourEndpoint`.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionRefusedError
from twisted.python.failure import Failure

from ccm.config.model import Detour
from ccm.upstream.handshake import MAX_HANDSHAKE_BYTES
from tests.upstream.handshakes import HTTP_DETOUR, HandshakeCase, Recorder


class HTTPConnectTests(HandshakeCase):
    """
    The HTTP CONNECT handshake.
    """

    def test_request_with_credentials(self) -> None:
        """
        The proxy is asked for a tunnel to host:port, with Basic credentials
        when the detour has a username.
        """
        clock, connected, transport, _ = self.connect(HTTP_DETOUR)
        self.assertEqual(
            transport.value(),
            b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n"
            b"Proxy-Authorization: Basic YWxpY2U6czNjcmV0LXByb3h5LXBhc3N3b3Jk\r\n\r\n",
        )
        self.assertNoResult(connected)

    def test_request_without_credentials(self) -> None:
        """
        Without a username no Proxy-Authorization header is sent.
        """
        detour = Detour("http", "127.0.0.1", 3128, name="plain")
        _, _, transport, _ = self.connect(detour, "api.example.com", 8443)
        self.assertEqual(
            transport.value(),
            b"CONNECT api.example.com:8443 HTTP/1.1\r\nHost: api.example.com:8443\r\n\r\n",
        )

    def test_tunnel_opened(self) -> None:
        """
        After a 2xx, the wrapped protocol is connected on the same transport
        and gets the bytes that followed the proxy's answer; its own writes
        go straight to the proxy connection; no timer is left.
        """
        clock, connected, transport, handshake = self.connect(HTTP_DETOUR)
        transport.clear()
        handshake.dataReceived(b"HTTP/1.1 200 Connection established\r\n")
        self.assertNoResult(connected)
        handshake.dataReceived(b"Via: x\r\n\r\nhello")
        wrapped = self.successResultOf(connected)
        assert isinstance(wrapped, Recorder)
        self.assertTrue(wrapped.made)
        self.assertEqual(wrapped.received, b"hello")
        handshake.dataReceived(b" world")
        self.assertEqual(wrapped.received, b"hello world")
        assert wrapped.transport is not None
        wrapped.transport.write(b"tls bytes")
        self.assertEqual(transport.value(), b"tls bytes")
        handshake.connectionLost(Failure(ConnectionRefusedError()))
        self.assertIsNotNone(wrapped.lost)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_auth_refused(self) -> None:
        """
        A 407 fails the connection with a message naming the detour and the
        refused credentials, without the password, and closes it.
        """
        clock, connected, transport, handshake = self.connect(HTTP_DETOUR)
        handshake.dataReceived(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
        self.assert_failed(connected, "http://127.0.0.1:3128", "credentials", "407")
        self.assertTrue(transport.disconnecting or transport.disconnected)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_target_unreachable(self) -> None:
        """
        A 502 says the proxy could not reach the target.
        """
        clock, connected, _, handshake = self.connect(HTTP_DETOUR)
        handshake.dataReceived(b"HTTP/1.0 502 Bad Gateway\r\n\r\n")
        self.assert_failed(connected, "could not reach api.example.com:443", "502 Bad Gateway")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_auth_refused_with_401(self) -> None:
        """
        A 401 (what tinyproxy answers to wrong credentials) also reports
        refused credentials.
        """
        _, connected, _, handshake = self.connect(HTTP_DETOUR)
        handshake.dataReceived(b"HTTP/1.0 401 Unauthorized\r\n\r\n")
        self.assert_failed(connected, "credentials", "401 Unauthorized")

    def test_other_refusal(self) -> None:
        """
        Another non-2xx answer is reported with its status.
        """
        _, connected, _, handshake = self.connect(HTTP_DETOUR)
        handshake.dataReceived(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        self.assert_failed(connected, "refused to connect", "403 Forbidden")

    def test_malformed_answer(self) -> None:
        """
        An answer that is not HTTP fails the connection as malformed.
        """
        _, connected, _, handshake = self.connect(HTTP_DETOUR)
        handshake.dataReceived(b"\x05\x00garbage\r\n\r\n")
        self.assert_failed(connected, "malformed answer")

    def test_closed_during_handshake(self) -> None:
        """
        The proxy closing the connection before answering fails it.
        """
        _, connected, _, handshake = self.connect(HTTP_DETOUR)
        handshake.connectionLost(Failure(ConnectionRefusedError()))
        self.assert_failed(connected, "closed the connection during the handshake")

    def test_answer_too_long(self) -> None:
        """
        A proxy answer that grows past :obj:`MAX_HANDSHAKE_BYTES` without
        ending fails the connection and closes it.
        """
        _, connected, transport, handshake = self.connect(HTTP_DETOUR)
        handshake.dataReceived(b"HTTP/1.1 200 OK\r\n")
        handshake.dataReceived(b"X-Padding: " + b"x" * MAX_HANDSHAKE_BYTES + b"\r\n")
        self.assert_failed(connected, "http://127.0.0.1:3128", "the proxy's answer is too long")
        self.assertTrue(transport.disconnecting or transport.disconnected)

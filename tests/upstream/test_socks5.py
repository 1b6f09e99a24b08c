"""
Tests for :obj:`ccm.upstream.socks5`: the SOCKS5 handshake (RFC 1928, RFC
1929), on a memory transport, through :obj:`ccm.upstream.tunnel.DetourEndpoint`.
"""

from __future__ import annotations

import struct

from tests.upstream.handshakes import (
    PASSWORD,
    SOCKS_AUTH_DETOUR,
    SOCKS_DETOUR,
    HandshakeCase,
    Recorder,
)


class Socks5Tests(HandshakeCase):
    """
    The SOCKS5 handshake (RFC 1928, RFC 1929).
    """

    REQUEST = b"\x05\x01\x00\x03\x0fapi.example.com" + struct.pack("!H", 443)

    def test_no_auth(self) -> None:
        """
        Without credentials only "no authentication" is offered, then a
        CONNECT with the host name (resolved by the proxy) is sent; the
        wrapped protocol gets what follows the reply, fed byte by byte.
        """
        clock, connected, transport, handshake = self.connect(SOCKS_DETOUR)
        self.assertEqual(transport.value(), b"\x05\x01\x00")
        transport.clear()
        handshake.dataReceived(b"\x05\x00")
        self.assertEqual(transport.value(), self.REQUEST)
        reply = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38" + b"data"
        for i in range(len(reply)):
            handshake.dataReceived(reply[i : i + 1])
        wrapped = self.successResultOf(connected)
        assert isinstance(wrapped, Recorder)
        self.assertEqual(wrapped.received, b"data")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_domain_reply_address(self) -> None:
        """
        A reply whose bound address is a domain name is skipped whole.
        """
        _, connected, _, handshake = self.connect(SOCKS_DETOUR)
        handshake.dataReceived(b"\x05\x00")
        handshake.dataReceived(b"\x05\x00\x00\x03\x04host\x00\x50rest")
        wrapped = self.successResultOf(connected)
        assert isinstance(wrapped, Recorder)
        self.assertEqual(wrapped.received, b"rest")

    def test_ip_target(self) -> None:
        """
        An IP address target is sent as an address, not a name.
        """
        _, _, transport, handshake = self.connect(SOCKS_DETOUR, "10.1.2.3", 80)
        transport.clear()
        handshake.dataReceived(b"\x05\x00")
        self.assertEqual(transport.value(), b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50")

    def test_username_password(self) -> None:
        """
        With credentials, username/password authentication is offered and
        sent as RFC 1929 says, then the CONNECT.
        """
        _, connected, transport, handshake = self.connect(SOCKS_AUTH_DETOUR)
        self.assertEqual(transport.value(), b"\x05\x01\x02")
        transport.clear()
        handshake.dataReceived(b"\x05\x02")
        self.assertEqual(
            transport.value(), b"\x01\x05alice" + bytes([len(PASSWORD)]) + PASSWORD.encode()
        )
        transport.clear()
        handshake.dataReceived(b"\x01\x00")
        self.assertEqual(transport.value(), self.REQUEST)
        handshake.dataReceived(b"\x05\x00\x00\x04" + b"\x00" * 16 + b"\x00\x00")
        self.successResultOf(connected)

    def test_auth_refused(self) -> None:
        """
        A failed username/password check fails the connection, naming the
        detour, without the password.
        """
        clock, connected, transport, handshake = self.connect(SOCKS_AUTH_DETOUR)
        handshake.dataReceived(b"\x05\x02")
        handshake.dataReceived(b"\x01\x01")
        self.assert_failed(connected, "detour socks-auth", "refused the credentials")
        self.assertTrue(transport.disconnecting or transport.disconnected)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_no_acceptable_method(self) -> None:
        """
        A proxy that wants authentication we do not have says so.
        """
        _, connected, _, handshake = self.connect(SOCKS_DETOUR)
        handshake.dataReceived(b"\x05\xff")
        self.assert_failed(connected, "socks-out", "requires authentication")

    def test_target_unreachable(self) -> None:
        """
        A reply other than success says the proxy could not reach the
        target, with the reason from RFC 1928.
        """
        _, connected, _, handshake = self.connect(SOCKS_AUTH_DETOUR)
        handshake.dataReceived(b"\x05\x02\x01\x00")
        handshake.dataReceived(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
        self.assert_failed(
            connected, "socks-auth", "could not reach api.example.com:443", "connection refused"
        )

    def test_wrong_version(self) -> None:
        """
        An answer that is not SOCKS5 fails as malformed.
        """
        _, connected, _, handshake = self.connect(SOCKS_DETOUR)
        handshake.dataReceived(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.assert_failed(connected, "malformed answer", "SOCKS version")

    def test_method_not_offered(self) -> None:
        """
        A proxy choosing a method that was not offered fails as malformed.
        """
        _, connected, _, handshake = self.connect(SOCKS_DETOUR)
        handshake.dataReceived(b"\x05\x02")
        self.assert_failed(connected, "malformed answer", "not offered")


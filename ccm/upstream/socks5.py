# -*- test-case-name: tests.upstream.test_socks5 -*-
"""
The SOCKS5 handshake (RFC 1928), with RFC 1929 username/password
authentication when the detour has a username.  The target goes to the
proxy as a domain name, so the proxy resolves it.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Callable

from ccm.upstream.handshake import MalformedAnswer, ProxyHandshake

_SOCKS_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class Socks5Handshake(ProxyHandshake):
    """
    Offer one authentication method (none, or username/password), then ask
    for a connection to the target; each step reads one answer.
    """

    def start(self) -> None:
        self._step: Callable[[], bool] = self._method_chosen
        method = b"\x02" if self._with_password() else b"\x00"
        assert self.transport is not None
        self.transport.write(b"\x05\x01" + method)

    def _with_password(self) -> bool:
        detour = self.detour
        return bool(detour.username or detour.password)

    def advance(self) -> None:
        while not self.done and self._step():
            pass

    def _take(self, n: int) -> bytes | None:
        if len(self.buffer) < n:
            return None
        taken, self.buffer = self.buffer[:n], self.buffer[n:]
        return taken

    def _method_chosen(self) -> bool:
        answer = self._take(2)
        if answer is None:
            return False
        version, method = answer
        if version != 5:
            raise MalformedAnswer(f"SOCKS version {version}, expected 5")
        assert self.transport is not None
        if method == 0xFF:
            if self._with_password():
                self.fail("the proxy does not accept username/password authentication")
            else:
                self.fail("the proxy requires authentication")
            return False
        if method == 0x02 and self._with_password():
            user = self.detour.username.encode("utf-8")
            password = self.detour.password.encode("utf-8")
            if len(user) > 255 or len(password) > 255:
                self.fail("the username or password is longer than SOCKS5 allows")
                return False
            self.transport.write(
                b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password
            )
            self._step = self._authenticated
            return True
        if method == 0x00 and not self._with_password():
            self._request()
            return True
        raise MalformedAnswer(f"the proxy chose authentication method {method}, which was not offered")

    def _authenticated(self) -> bool:
        answer = self._take(2)
        if answer is None:
            return False
        if answer[1] != 0:
            self.fail("the proxy refused the credentials")
            return False
        self._request()
        return True

    def _request(self) -> None:
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            name = self.host.encode("idna")
            if len(name) > 255:
                raise MalformedAnswer("the host name is too long for SOCKS5") from None
            target = b"\x03" + bytes([len(name)]) + name
        else:
            kind = b"\x01" if address.version == 4 else b"\x04"
            target = kind + address.packed
        assert self.transport is not None
        self.transport.write(b"\x05\x01\x00" + target + struct.pack("!H", self.port))
        self._step = self._connected

    def _connected(self) -> bool:
        if len(self.buffer) < 5:
            return False
        version, reply, _, kind, first = self.buffer[:5]
        if version != 5:
            raise MalformedAnswer(f"SOCKS version {version}, expected 5")
        if reply != 0:
            why = _SOCKS_REPLIES.get(reply, f"reply code {reply}")
            self.fail(f"the proxy could not reach {self.target} ({why})")
            return False
        sizes = {1: 4, 3: 1 + first, 4: 16}
        if kind not in sizes:
            raise MalformedAnswer(f"unknown address type {kind}")
        total = 4 + sizes[kind] + 2
        if len(self.buffer) < total:
            return False
        rest = self.buffer[total:]
        self.buffer = b""
        self.tunnel_open(rest)
        return False

# -*- test-case-name: tests.upstream.test_http_connect -*-
"""
The HTTP CONNECT handshake (RFC 9110 section 9.3.6): ask an HTTP proxy for
a tunnel to ``host:port``, with Basic credentials when the detour has a
username.
"""

from __future__ import annotations

import base64

from ccm.upstream.handshake import MalformedAnswer, ProxyHandshake


class HTTPConnectHandshake(ProxyHandshake):
    """
    Send ``CONNECT host:port``; a 2xx answer opens the tunnel, anything else
    fails it with the proxy's status.
    """

    def start(self) -> None:
        target = self.target.encode("idna")
        lines = [b"CONNECT " + target + b" HTTP/1.1", b"Host: " + target]
        detour = self.detour
        if detour.username or detour.password:
            secret = f"{detour.username}:{detour.password}".encode("utf-8")
            lines.append(b"Proxy-Authorization: Basic " + base64.b64encode(secret))
        assert self.transport is not None
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n")

    def advance(self) -> None:
        head, found, rest = self.buffer.partition(b"\r\n\r\n")
        if not found:
            return
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise MalformedAnswer(f"not an HTTP status line: {status_line[:80]!r}")
        code = int(parts[1])
        phrase = parts[2].strip() if len(parts) > 2 else ""
        answer = f"{code} {phrase}".strip()
        if 200 <= code < 300:
            self.tunnel_open(rest)
        elif code in (401, 407):  # tinyproxy answers 401
            self.fail(f"the proxy refused the credentials ({answer})")
        elif code in (502, 503, 504):
            self.fail(f"the proxy could not reach {self.target} ({answer})")
        else:
            self.fail(f"the proxy refused to connect to {self.target} ({answer})")

"""
The least a twisted.web proxy does, for the benchmark's ``twisted`` path.

Run as ``python bench/floor_proxy.py PORT UPSTREAM_PORT ACCESS_TOKEN``; it
prints ``listening on PORT`` once it accepts connections.

It is built from the same parts as ccm's hot path and nothing more: a
twisted.web ``Site`` with one leaf resource, the request's headers copied
(less the hop-by-hop ones) with ``Authorization`` replaced by the upstream
token, the body sent through an ``Agent`` with a persistent connection pool,
and the upstream's status, headers and body streamed back chunk by chunk
through ``deliverBody``. It checks no token, keeps no accounts, writes no log
line and sets no timers. So its CPU per request is the floor of what any
proxy of ccm's shape (twisted.web and Twisted's HTTP client, on this Python)
can spend; what ccm spends above it is ccm's own work.

It does no backpressure (the slow-client workload does not run on it) and
handles no errors beyond a 502; it is a yardstick, not a proxy to use.
"""

from __future__ import annotations

import sys
from typing import Optional

from twisted.internet import reactor
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IResponse

# ccm's producer of a body held in memory (written at once), so that the
# floor sends bodies as ccm does.
from ccm.upstream.client import BytesProducer

#: Request headers not passed on: hop-by-hop ones, and the two replaced.
_DROPPED = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"host", b"authorization", b"content-length")
)
#: Response headers twisted.web sets itself.
_OWN = frozenset((b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date", b"server"))


class _Relay(Protocol):
    """Writes the upstream body into the client's response as it arrives."""

    def __init__(self, request: server.Request) -> None:
        self.request = request

    def dataReceived(self, data: bytes) -> None:
        self.request.write(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.request.finished and not self.request._disconnected:
            self.request.finish()


class Forward(resource.Resource):
    """Every request, whatever its path, forwarded to the upstream."""

    isLeaf = True

    def __init__(self, agent: Agent, base: bytes, token: bytes) -> None:
        super().__init__()
        self.agent = agent
        self.base = base
        self.authorization = [b"Bearer " + token]

    def render(self, request: server.Request) -> int:
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in _DROPPED:
                headers.setRawHeaders(name, values)
        headers.setRawHeaders(b"authorization", self.authorization)
        content = request.content
        producer: Optional[IBodyProducer]
        if content is None:
            producer = None
        else:
            content.seek(0, 2)
            size = content.tell()
            content.seek(0)
            producer = BytesProducer(content.read()) if size < 1024 * 1024 else FileBodyProducer(content)
        d = self.agent.request(request.method, self.base + request.uri, headers, producer)
        d.addCallbacks(self._answer, self._fail, callbackArgs=(request,), errbackArgs=(request,))
        return server.NOT_DONE_YET

    def _answer(self, response: IResponse, request: server.Request) -> None:
        request.setResponseCode(response.code)
        out = request.responseHeaders
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in _OWN:
                out.setRawHeaders(name, values)
        response.deliverBody(_Relay(request))

    def _fail(self, failure: Failure, request: server.Request) -> None:
        if not request._disconnected:
            request.setResponseCode(502)
            request.finish()


def main(argv: list[str]) -> None:
    port, upstream, token = int(argv[1]), int(argv[2]), argv[3].encode("ascii")
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 64
    site = server.Site(Forward(Agent(reactor, pool=pool), "http://127.0.0.1:{}".format(upstream).encode("ascii"), token))
    site.displayTracebacks = False
    site.log = lambda request: None  # type: ignore[method-assign]
    reactor.listenTCP(port, site, backlog=4096, interface="127.0.0.1")  # type: ignore[attr-defined]
    print("listening on", port, flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv)

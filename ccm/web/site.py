# -*- test-case-name: tests.web.test_site -*-
"""
The site that serves a service's URL tree (:obj:`ccm.web.tree`).

The site keeps request bodies within the configured limit and keeps its
access log quiet: ccm logs one line of its own per proxied request.  Its
connections follow :obj:`ccm.web.connections` (deadlines for slow clients)
and :obj:`ccm.web.admission` (caps for greedy ones), and it knows which are
open (:obj:`OpenChannels`), so that a shutdown closes them properly.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from ccm.web.admission import ConnectionGate, address_key
from ccm.config.model import ConnectionLimits
from ccm.web.connections import CcmChannel
from ccm.web.errors import answer_bug


class LimitedRequest(Request):
    """
    A request that stops storing its body once it exceeds the site's
    ``max_request_body``; the proxy then answers 413 without reading it.

    It is also the safety net for bugs: an exception escaping a resource's
    ``render`` is logged with its traceback and answered in the Anthropic
    shape (see :obj:`processingFailed`), not with twisted.web's HTML page.
    """

    body_too_large = False
    _body_size = 0
    _crash_log = Logger(namespace="ccm.web.site")

    def processingFailed(self, reason: Failure) -> Failure:
        """
        Log the traceback of an exception that escaped ``render``, then
        answer 500 ``api_error`` with a request id when nothing was sent
        yet, or abort the connection when part of the answer was.
        """
        self._crash_log.failure(
            "handling {method} {path} failed",
            failure=reason,
            method=self.method.decode("ascii", "replace"),
            path=self.path.decode("ascii", "replace")[:200],
        )
        if not (self.finished or self._disconnected):
            answer_bug(self)
        return reason

    def _limit(self) -> int | None:
        site = getattr(self.channel, "site", None)
        return getattr(site, "max_request_body", None)

    def gotLength(self, length: int | None) -> None:
        limit = self._limit()
        if limit is not None and length is not None and length > limit:
            self.body_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._body_size += len(data)
        limit = self._limit()
        if limit is not None and self._body_size > limit:
            self.body_too_large = True
            content = self.content
            assert content is not None  # gotLength made it
            content.seek(0)
            content.truncate()
            return
        super().handleContentChunk(data)


class OpenChannels:
    """
    The open channels of one site, each from when the site builds it for
    a new connection until that connection is lost, so that a shutdown
    can close them itself (:obj:`close`): the reactor, when it stops, drops
    every connection without sending what it still holds, which could be
    the end of the last responses.

    :param clock: the time for the bound of :obj:`close`.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._channels: set[CcmChannel] = set()
        self._waiting: list[Deferred[None]] = []

    def __len__(self) -> int:
        return len(self._channels)

    def add(self, channel: CcmChannel) -> Callable[[], None]:
        """
        Hold ``channel`` as open; return what lets it go, to be called when
        its connection is lost (more than once is harmless).
        """
        self._channels.add(channel)
        return partial(self._forget, channel)

    def _forget(self, channel: CcmChannel) -> None:
        self._channels.discard(channel)
        if not self._channels:
            waiting, self._waiting = self._waiting, []
            for waiter in waiting:
                waiter.callback(None)

    def close(self, timeout: float) -> Deferred[None]:
        """
        Close every open connection gracefully: each one sends what it
        still holds, then closes (:obj:`HTTPChannel.loseConnection`), so an
        idle one closes at once and one still being written once its
        client has read the rest.  Those still open after ``timeout``
        seconds, whose clients do not read, are aborted: a shutdown does
        not wait for them.

        :return: a Deferred that fires, never failing, when every
            connection is closed.
        """
        for channel in list(self._channels):
            if channel.transport is None:
                self._forget(channel)  # Built but never connected.
            else:
                channel.loseConnection()
        closed = self._when_empty()
        closed.addTimeout(timeout, self._clock, onTimeoutCancel=self._abort_rest)
        # An aborted connection is lost in the reactor's next turn.
        return closed.addCallback(lambda _: self._when_empty())

    def _when_empty(self) -> Deferred[None]:
        if not self._channels:
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._waiting.remove)
        self._waiting.append(waiter)
        return waiter

    def _abort_rest(self, result: None | Failure, timeout: float) -> None:
        self.log.warn(
            "{count} client connection(s) not closed within {timeout} seconds; "
            "aborting them",
            count=len(self._channels),
            timeout=timeout,
        )
        for channel in list(self._channels):
            transport = channel.transport
            assert transport is not None  # close() forgot the others
            transport.abortConnection()


class CcmSite(Site):
    """
    The site of one ccm service.

    Request bodies are never parsed as form submissions: ccm forwards them
    untouched (a multipart upload to ``/v1/files`` is the upstream's to
    read, not twisted.web's).

    :param reactor: the clock for connection timeouts; the global reactor
        when ``None``.
    :param connection_limits: the bounds of each new connection; a
        connection keeps those it opened with, so replacing
        ``connection_limits`` applies new ones to new connections.
    """

    requestFactory = LimitedRequest
    # twisted.web types this as its own channel factory (and ignores the
    # same error where it sets it).
    protocol = CcmChannel  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        resource: IResource,
        max_request_body: int,
        reactor: IReactorTime | None = None,
        connection_limits: ConnectionLimits = ConnectionLimits(),
    ) -> None:
        # No idle timeout of twisted.web's: the channel keeps its own.
        super().__init__(
            resource, parsePOSTFormSubmission=False, reactor=reactor, timeout=None
        )
        self.max_request_body = max_request_body
        self.connection_limits = connection_limits
        self.connections = ConnectionGate(self.reactor)
        self.channels = OpenChannels(self.reactor)

    # A refused connection gets a protocol of its own rather than a channel,
    # which twisted.web's annotation does not foresee.
    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:  # type: ignore[override]
        """
        A channel for a new connection, or the refusal of a connection over
        a cap.
        """
        limits = self.connection_limits
        key = address_key(addr)
        refusal = self.connections.refusal(limits, key)
        if refusal is not None:
            return self.connections.refuse(refusal, addr)
        channel = super().buildProtocol(addr)
        assert isinstance(channel, CcmChannel)  # this site's protocol
        channel.limits = limits
        channel.clock = self.reactor
        channel.gate = self.connections
        uncount = self.connections.opened(key)
        forget = self.channels.add(channel)

        def release() -> None:
            uncount()
            forget()

        channel.release = release
        return channel

    def close_connections(self, timeout: float) -> Deferred[None]:
        """
        Close the open connections at shutdown, each after it sent what it
        holds, aborting those still open after ``timeout`` seconds; see
        :obj:`OpenChannels.close`.

        :return: a Deferred that fires, never failing, when they are all
            closed.
        """
        return self.channels.close(timeout)

    def log(self, request: http.Request) -> None:
        """
        No access log: the proxy logs each request itself, without query
        strings or headers that could carry secrets.
        """

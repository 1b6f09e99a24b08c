# -*- test-case-name: tests.proxy.test_resource,tests.proxy.test_backpressure,tests.proxy.test_shutdown -*-
"""
The body protocols of upstream responses: :obj:`Relay` writes a body to the
client as it arrives, :obj:`Discard` drops one nobody wants; and
:obj:`request_data`, the request body as sent upstream, from a file that
survives being sent (:obj:`KeepOpen`) for a large one.

The relay registers the upstream transport as the client request's
producer, so a client that reads slowly pauses the upstream connection
instead of growing memory.  It knows nothing of the exchange it serves: it
reports the bytes it relays and how the body ended through two callbacks.
"""

from __future__ import annotations

from typing import IO, Callable, cast

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import Cooperator
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from twisted.web.http import PotentialDataLoss
from twisted.web.client import FileBodyProducer, ResponseDone
from twisted.web.server import Request

from ccm.proxy.context import UsageMeter
from ccm.web.errors import error_body, new_request_id

# A stream still running when ccm stops ends with this SSE error.
# overloaded_error, not api_error: it is the type Anthropic itself sends
# mid-stream for a passing condition, and Claude Code answers it by
# retrying the stream after a pause, where an api_error makes it fall back
# to a non-streaming request (anthropic-wire.md section 1.3).
STREAM_ENDED_BY_SHUTDOWN = ("overloaded_error", "ccm is restarting; retry the request")


class KeepOpen:
    """
    A file whose ``close`` does nothing: :obj:`twisted.web.client.FileBodyProducer`
    closes what it has read, and a retry must read the request body again.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        pass


def request_data(
    body: bytes | IO[bytes], method: bytes, cooperator: Cooperator
) -> bytes | FileBodyProducer | None:
    """
    The body to send upstream: the bytes (none for an empty ``GET`` or
    ``HEAD``), or, for a large body, a producer reading twisted.web's
    temporary file from the start (again for a retry on another credential).
    """
    if isinstance(body, bytes):
        if body or method not in (b"GET", b"HEAD"):
            return body
        return None
    body.seek(0)
    return FileBodyProducer(KeepOpen(body), cooperator=cooperator)


def _stop_producing(protocol: Protocol) -> None:
    """
    Drop the rest of the upstream body ``protocol`` receives.
    :obj:`twisted.web.iweb.IResponse.deliverBody` makes
    its transport an :obj:`IPushProducer`, which ``Protocol.transport`` (an
    ``ITransport`` or None) does not say.
    """
    cast(IPushProducer, protocol.transport).stopProducing()


class Discard(Protocol):
    """
    Drop a response body nobody wants any more.
    """

    def connectionMade(self) -> None:
        _stop_producing(self)


class Relay(TimeoutMixin, Protocol):
    """
    Write an upstream body to the client as it arrives.

    :param request: the client's request, whose status and headers are
        sent already.
    :param clock: the clock of the idle timeout.
    :param idle_timeout: seconds of upstream silence after which the body
        counts as lost.
    :param is_event_stream: whether the body is an event stream, which ends
        with an SSE error event when it breaks off.
    :param meter: reads the usage out of the body, if it is counted.
    :param sent: called with the number of bytes each time some are
        written to the client.
    :param ended: called once, before the client's response ends, with why
        the body ended early (``None`` when it is complete) and whether that
        deserves a warning.
    """

    def __init__(
        self,
        request: Request,
        *,
        clock: IReactorTime,
        idle_timeout: float,
        is_event_stream: bool,
        meter: UsageMeter | None,
        sent: Callable[[int], None],
        ended: Callable[[str | None, bool], None],
    ) -> None:
        self.request = request
        self._clock = clock
        self._idle_timeout = idle_timeout
        self.is_event_stream = is_event_stream
        self.meter = meter
        self._sent = sent
        self._ended = ended
        self.idle_timed_out = False
        self.client_gone = False
        self.tail = b""
        # Set once the client's response is ended (or the client is gone):
        # nothing more is relayed or counted.
        self.ended = False

    def callLater(self, period: float, func: Callable[[], None]) -> IDelayedCall:
        """
        The idle timeout runs on the exchange's clock, not on the global
        reactor (:obj:`TimeoutMixin`'s default).
        """
        return self._clock.callLater(period, func)

    def connectionMade(self) -> None:
        self.request.registerProducer(self.transport, True)
        self.setTimeout(self._idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self.ended:
            return
        self.resetTimeout()
        if self.meter is not None:
            self.meter.feed(data)
        if self.client_gone:
            return
        self._sent(len(data))
        self.tail = (self.tail + data[-2:])[-2:]
        self.request.write(data)

    def timeoutConnection(self) -> None:
        self.idle_timed_out = True
        _stop_producing(self)

    def client_went_away(self) -> None:
        """
        The client is gone: drop the rest of the upstream body.
        """
        self.client_gone = True
        _stop_producing(self)

    def cut(self) -> None:
        """
        End the client's response now because ccm is stopping, and drop
        the rest of the upstream body.
        """
        if not self.ended:
            self._end("ended by ccm's shutdown", STREAM_ENDED_BY_SHUTDOWN, warn=False)
        _stop_producing(self)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        if self.ended:
            return
        if reason.check(ResponseDone, PotentialDataLoss) and not self.idle_timed_out:
            self._end(None)
            return
        problem = (
            "the upstream stream stalled"
            if self.idle_timed_out
            else "the upstream connection was lost mid-response"
        )
        self._end(problem)

    def _end(
        self,
        problem: str | None,
        sse_error: tuple[str, str] | None = None,
        warn: bool = True,
    ) -> None:
        """
        Report the end, then end the response for the client: cleanly when
        ``problem`` is None, else, for an event stream, with an SSE ``error``
        event and a proper end, and for any other body by aborting the
        connection.

        :param sse_error: the error's type and message; by default an
            ``api_error`` naming ``problem``.
        :param warn: whether ``problem`` deserves a warning.
        """
        self.ended = True
        self.setTimeout(None)
        self._ended(problem, warn)
        if self.client_gone:
            return
        self.request.unregisterProducer()
        if problem is None:
            self.request.finish()
            return
        if self.is_event_stream:
            # The 200 is already sent; an SSE error event is what clients
            # understand as a failed stream.
            separator = b"" if self.tail == b"\n\n" or not self.tail else b"\n\n"
            error_type, message = sse_error or ("api_error", f"ccm: {problem}")
            frame = error_body(error_type, message, new_request_id()).rstrip(b"\n")
            self.request.write(separator + b"event: error\ndata: " + frame + b"\n\n")
            self.request.finish()
        else:
            # Make the truncation visible: a clean end would look complete.
            self.request.channel.forceAbortClient()

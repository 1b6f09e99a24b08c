# -*- test-case-name: tests.proxy.test_rejections -*-
"""
Upstream 400, 401 and 403 answers, read before they are relayed: what they
say about the credential decides whether the client sees them.

An :obj:`AnswerCheck` reads such an answer's body, up to
:obj:`INSPECTED_BODY_BYTES` (a larger one is no verdict and is relayed as it
streams), has :obj:`ccm.upstream.verdicts.classify` read it, acts on the
credential and tells the exchange its next :obj:`Step`:

- a rejected token (401, or 403 "revoked"): the credential looks for
  another (:obj:`ccm.credentials.credential.Credential.recover`) and the
  request is sent again with it, once; when there is none, or the retry
  is rejected too, the credential needs a new login and the request moves
  on, as after a ban;
- a ban (organization disabled, OAuth not allowed): the credential is
  quarantined, and the request moves to another credential of the pool,
  or, when none can serve, gets ccm's own answer saying why;
- anything else, the client's own mistakes and the third-party 400
  included: the answer is relayed exactly as it came.
"""

from __future__ import annotations

from enum import Enum
from typing import Callable, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from twisted.web.http import PotentialDataLoss
from twisted.web.client import ResponseDone
from twisted.web.iweb import IResponse

from ccm.credentials.credential import Credential
from ccm.proxy.context import ExchangeContext
from ccm.upstream.verdicts import Reading, Verdict, classify
from ccm.web.errors import APIError

INSPECTED_STATUSES = frozenset({400, 401, 403})
# Error bodies are a few hundred bytes; a larger body is no error answer
# worth holding back.
INSPECTED_BODY_BYTES = 64 * 1024


class Step(Enum):
    """
    What the exchange does after an inspected answer.
    """

    #: Relay the answer, byte for byte, with its headers.
    RELAY = "relay"
    #: Send the request again on the same credential, with its new token.
    RETRY = "retry"
    #: Send the request on another credential of the pool (the one tried
    #: is excluded), or answer with the pool's error when none can serve.
    MOVE = "move"
    #: The answer broke off before its end: answer with ccm's 502.
    BROKEN = "broken"


def broken_answer(upstream_url: str, status: int) -> APIError:
    """
    ccm's answer when the body of an upstream error broke off (or stalled)
    before ccm had it whole, and nothing of it reached the client.
    """
    return APIError(502, "api_error", f"upstream {upstream_url} broke off its HTTP {status} answer")


class AnswerCheck(TimeoutMixin, Protocol):
    """
    The body protocol of an inspected answer: it keeps the body, then
    fires :obj:`decision` with the :obj:`Step` and the body; a body larger
    than ``limit`` is handed, with what arrived of it, to the protocol
    ``too_large`` returns (the exchange's relay), and no decision follows.

    :param sent_token: the access token the request carried.
    :param recovered: the tags of the credentials a recovery was tried on
        for this request (each at most once); this check adds to it.
    :param idle_timeout: seconds of upstream silence after which the body
        counts as broken off.
    """

    def __init__(
        self,
        credential: Credential,
        status: int,
        *,
        sent_token: str,
        recovered: set[str],
        clock: IReactorTime,
        idle_timeout: float,
        too_large: Callable[[], IProtocol],
        limit: int = INSPECTED_BODY_BYTES,
    ) -> None:
        self._credential = credential
        self._status = status
        self._sent_token = sent_token
        self._recovered = recovered
        self._clock = clock
        self._idle_timeout = idle_timeout
        self.decision: Deferred[tuple[Step, bytes]] = Deferred()
        self._too_large = too_large
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self._successor: IProtocol | None = None
        self._timed_out = False
        self.done = False

    @classmethod
    def read(
        cls,
        response: IResponse,
        credential: Credential,
        context: ExchangeContext,
        *,
        sent_token: str,
        recovered: set[str],
        too_large: Callable[[], IProtocol],
    ) -> AnswerCheck:
        """
        Start checking ``response``, which ``credential`` got, in the
        exchange of ``context``.
        """
        check = cls(
            credential,
            response.code,
            sent_token=sent_token,
            recovered=recovered,
            clock=context.clock,
            idle_timeout=context.timeouts.stream_idle,
            too_large=too_large,
        )
        response.deliverBody(check)
        return check

    def callLater(self, period: float, func: Callable[[], None]) -> IDelayedCall:
        """
        The idle timeout runs on the exchange's clock.
        """
        return self._clock.callLater(period, func)

    def connectionMade(self) -> None:
        self.setTimeout(self._idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self._successor is not None:
            self._successor.dataReceived(data)
            return
        self.resetTimeout()
        self._chunks.append(data)
        self._size += len(data)
        if self._size > self._limit:
            self.setTimeout(None)
            self.done = True
            self._successor = successor = self._too_large()
            successor.makeConnection(cast(ITransport, self.transport))
            successor.dataReceived(b"".join(self._chunks))
            self._chunks = []

    def timeoutConnection(self) -> None:
        self._timed_out = True
        self.stop()

    def stop(self) -> None:
        """
        Drop the rest of the body (the client is gone); nothing is decided.
        """
        if self.transport is not None and not self.done:
            IPushProducer(self.transport).stopProducing()

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        if self._successor is not None:
            self._successor.connectionLost(reason)
            return
        self.setTimeout(None)
        self.done = True
        body = b"".join(self._chunks)
        if self._timed_out or not reason.check(ResponseDone, PotentialDataLoss):
            self.decision.callback((Step.BROKEN, body))
            return
        deciding = self._decide(classify(self._status, body))
        deciding.addCallback(lambda step: (step, body)).chainDeferred(self.decision)

    def _decide(self, reading: Reading) -> Deferred[Step]:
        credential = self._credential
        if reading.verdict is Verdict.TOKEN_REJECTED:
            if credential.tag in self._recovered:
                return succeed(self._rejected(reading))
            self._recovered.add(credential.tag)
            recovering = credential.recover(self._sent_token, reading.describe())
            return recovering.addCallback(
                lambda found: Step.RETRY if found else self._rejected(reading)
            )
        if reading.verdict.quarantines:
            credential.standing.enter_quarantine(reading.ban)
            return succeed(Step.MOVE)
        if reading.verdict is Verdict.THIRD_PARTY:
            # Passed on as it came; whether it pauses the credential is its
            # extra_usage setting's to say (see ccm.pool.member).
            credential.rate_limits.observe_extra_usage_refusal(self._clock.seconds())
        return succeed(Step.RELAY)

    def _rejected(self, reading: Reading) -> Step:
        self._credential.standing.reject_login(self._sent_token, reading.describe())
        return Step.MOVE

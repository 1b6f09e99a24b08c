# -*- test-case-name: tests.proxy.test_metering -*-
"""
The tokens of one proxied response, for the usage file: a meter reads
them out of the body while it is relayed, and they are recorded once the
body ended, however it ended (a stream cut short still used the tokens
its first events reported).
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.web.iweb import IResponse

from ccm.accounting.counters import UsageRecord, UsageRecorder
from ccm.accounting.meter import EventStreamUsage, JSONBodyUsage, TokenUsage
from ccm.accounting.pricing import context_window_for
from ccm.accounting.week import week_start_from_headers
from ccm.proxy.context import UsageMeter
from ccm.proxy.facts import RequestFacts


class ResponseUsage:
    """
    The usage of one response, metered and then recorded.

    :ivar meter: what reads the body.
    """

    def __init__(self, recorder: UsageRecorder, meter: UsageMeter, week_start_unix: int) -> None:
        self._recorder = recorder
        self.meter = meter
        self._week_start_unix = week_start_unix

    @classmethod
    def of(
        cls, recorder: UsageRecorder | None, response: IResponse, content_type: bytes
    ) -> ResponseUsage | None:
        """
        The usage of ``response`` when it is to be counted: only successful
        Messages API answers (event streams and JSON) carry usage.

        :param recorder: where to record it; ``None`` counts nothing.
        :param content_type: the response's content type, lower-cased.
        """
        if recorder is None or response.code != 200:
            return None
        meter: UsageMeter
        if b"text/event-stream" in content_type:
            meter = EventStreamUsage()
        elif b"json" in content_type:
            meter = JSONBodyUsage()
        else:
            return None
        return cls(recorder, meter, week_start_from_headers(response.headers))

    def record(self, facts: RequestFacts, user: str, log: Logger) -> TokenUsage | None:
        """
        Record what the body used so far; a recorder that fails is logged.

        :param facts: the request's facts (its model, when the response
            names none, and its betas).
        :param user: the caller's name.
        :return: the usage, or ``None`` when there was none to record.
        """
        usage = self.meter.finish()
        model = usage.model or facts.model
        if not usage.has_tokens or not model:
            return None
        context_window = context_window_for(model, usage.total_input_tokens, list(facts.betas))
        try:
            self._recorder.record(
                UsageRecord(
                    model=model,
                    context_window=context_window,
                    week_start_unix=self._week_start_unix,
                    user=user,
                    tokens=usage,
                    messages=facts.messages,
                )
            )
        except Exception:
            log.failure("recording usage failed")
        return usage

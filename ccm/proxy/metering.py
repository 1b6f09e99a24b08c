# -*- test-case-name: tests.proxy.test_metering -*-
"""
The tokens of one proxied response, for the usage file and the metrics: a
meter reads them out of the body while it is relayed, and they are
recorded once the body ended, however it ended (a stream cut short still
used the tokens its first events reported).
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.web.iweb import IResponse

from ccm.accounting.counters import UsageRecord, UsageRecorder
from ccm.accounting.meter import EventStreamUsage, JSONBodyUsage
from ccm.accounting.pricing import context_window_for
from ccm.accounting.week import week_start_from_headers
from ccm.proxy.context import UsageMeter
from ccm.proxy.facts import RequestFacts


class ResponseUsage:
    """
    The usage of one response, metered and then recorded.

    :ivar meter: what reads the body.
    """

    def __init__(
        self, recorder: UsageRecorder | None, meter: UsageMeter, week_start_unix: int
    ) -> None:
        self._recorder = recorder
        self.meter = meter
        self._week_start_unix = week_start_unix

    @property
    def counted(self) -> bool:
        """
        Whether the usage goes to a usage file (docs/running.md: only then
        does the log line show the tokens).
        """
        return self._recorder is not None

    @classmethod
    def of(
        cls, recorder: UsageRecorder | None, response: IResponse, content_type: bytes
    ) -> ResponseUsage | None:
        """
        The usage of ``response`` when it is to be metered: only successful
        Messages API answers (event streams and JSON) carry usage.

        :param recorder: where to record it; ``None`` meters it for the
            metrics and the log line only.
        :param content_type: the response's content type, lower-cased.
        """
        if response.code != 200:
            return None
        meter: UsageMeter
        if b"text/event-stream" in content_type:
            meter = EventStreamUsage()
        elif b"json" in content_type:
            meter = JSONBodyUsage()
        else:
            return None
        return cls(recorder, meter, week_start_from_headers(response.headers))

    def record(self, facts: RequestFacts, user: str, log: Logger) -> UsageRecord | None:
        """
        Record what the body used so far; a recorder that fails is logged.

        :param facts: the request's facts (its model, when the response
            names none, and its betas).
        :param user: the caller's name.
        :return: the record (its ``tokens`` a :obj:`TokenUsage`), or
            ``None`` when there was none.
        """
        usage = self.meter.finish()
        model = usage.model or facts.model
        if not usage.has_tokens or not model:
            return None
        record = UsageRecord(
            model=model,
            context_window=context_window_for(model, usage.total_input_tokens, list(facts.betas)),
            week_start_unix=self._week_start_unix,
            user=user,
            tokens=usage,
            messages=facts.messages,
        )
        if self._recorder is not None:
            try:
                self._recorder.record(record)
            except Exception:
                log.failure("recording usage failed")
        return record

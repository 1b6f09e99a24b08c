# -*- test-case-name: tests.web.test_problems -*-
"""
The last warnings and errors ccm logged, for the dashboard.

:obj:`RecentProblems` is a log observer that keeps the newest
:obj:`MAX_PROBLEMS` events of level warn or above, as their formatted text
(ccm never logs a secret, so none can be shown), in a bounded ring.  As a
service, it observes a log publisher (the global one) while it runs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.logger import ILogObserver, LogEvent, LogLevel, LogPublisher, formatEvent
from zope.interface import implementer

MAX_PROBLEMS = 50
#: A longer text (a traceback) is shortened to this many characters.
MAX_PROBLEM_CHARACTERS = 600


@dataclass(frozen=True)
class Problem:
    """
    One logged event: when (Unix seconds), its level's name, its system
    (the logger's namespace) and its text.
    """

    at: float
    level: str
    namespace: str
    text: str


@implementer(ILogObserver)
class RecentProblems(Service):
    """
    The last warnings and errors of ``publisher``, newest last.
    """

    def __init__(self, publisher: LogPublisher, size: int = MAX_PROBLEMS) -> None:
        self._publisher = publisher
        self._problems: deque[Problem] = deque(maxlen=size)

    def startService(self) -> None:
        super().startService()
        self._publisher.addObserver(self)

    def stopService(self) -> None:
        self._publisher.removeObserver(self)
        super().stopService()

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level")
        if not isinstance(level, type(LogLevel.warn)) or level < LogLevel.warn:
            return
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}: {failure.getErrorMessage()}"
        if len(text) > MAX_PROBLEM_CHARACTERS:
            text = text[: MAX_PROBLEM_CHARACTERS - 1] + "\u2026"
        self._problems.append(
            Problem(
                at=float(event.get("log_time", 0.0)),
                level=level.name,
                namespace=str(event.get("log_namespace", "")),
                text=text,
            )
        )

    @property
    def problems(self) -> tuple[Problem, ...]:
        """
        The problems kept, newest first.
        """
        return tuple(reversed(self._problems))

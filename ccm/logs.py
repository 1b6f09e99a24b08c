# -*- test-case-name: tests.test_logs -*-
"""
ccm's log as JSON lines, for machines: ``twistd -n --logger
ccm.logs.json_observer ccm --config config.json``.

twistd's ``--logger`` takes the name of a factory of log observers; this
one writes each event as Twisted writes it (:obj:`twisted.logger.eventAsJSON`:
every field of the event as a key, numbers as numbers, ``log_level``,
``log_namespace``, ``log_time`` and the rest of Twisted's own keys) on a line
of its own on standard output, with one key more, ``log_text``: the line as
the text log shows it.  Lines are newline-delimited (no record separator),
as journald, ``jq`` and log shippers read them.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from twisted.logger import FileLogObserver, LogEvent, eventAsJSON, formatEvent


def event_line(event: LogEvent) -> str:
    """
    One event as a JSON line: :obj:`eventAsJSON` of the event with its
    formatted text as ``log_text``, and a newline.  The event itself, which
    other observers see too, is not changed.
    """
    return eventAsJSON(dict(event, log_text=formatEvent(event))) + "\n"


def json_observer(out: IO[Any] | None = None) -> FileLogObserver:
    """
    The observer of ``--logger ccm.logs.json_observer``: JSON lines of
    :obj:`event_line` on ``out``.

    :param out: where the lines go; standard output when ``None`` (twistd
        calls the factory without arguments).
    """
    return FileLogObserver(sys.stdout if out is None else out, event_line)

# -*- test-case-name: tests.web.test_status,tests.web.test_watch -*-
"""
``GET /ccm/v1/status``: how much of the caller's pool is used.

The answer has the reference's three fields, ``five_hour_utilization``,
``weekly_utilization`` (percent, measured against each credential's pause
threshold, a credential that cannot serve counting as full) and
``plan_weight``, plus ``five_hour_reset`` and ``weekly_reset`` (Unix seconds,
0 when unknown), as the newest sing-box has them; see
:obj:`ccm.pool.member.pool_status`.

Two query parameters add to it:

- ``session=<X-Claude-Code-Session-Id>`` adds a ``session`` object: the
  credential of the caller's pool that session is on, with its state and
  windows (:obj:`ccm.pool.standing.credential_standing`), or
  ``{"credential": null}`` when it is on none.  Asking places no session
  and keeps none alive.
- ``watch=true`` keeps the response open and sends the answer again each
  time it changes (:obj:`ccm.web.watch`); ``watch=false`` is the default.

When the caller has a share (``share_5h``, ``share_weekly``), a ``share``
object gives their own figures for each window they have one of
(:obj:`ccm.shares.gate.ShareKeeper.status`).

Other parameters are ignored, as the reference ignores them, so that a
client written for a newer server, or one that adds a cache buster, still
gets an answer.  A parameter given twice, an empty or overlong session id
and a ``watch`` other than ``true`` or ``false`` are a 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request

from ccm.pool.select import Pool
from ccm.pool.sessions import MAX_SESSION_ID_LENGTH
from ccm.pool.standing import credential_standing, next_change
from ccm.web.auth import Authenticator, Caller
from ccm.web.errors import NOT_FOUND, APIError, method_not_allowed, render_error
from ccm.web.watch import Snapshot, StatusWatches


_METHOD_NOT_ALLOWED = method_not_allowed(b"GET")


def _bad_query(message: str) -> APIError:
    return APIError(400, "invalid_request_error", message, headers=(("x-should-retry", "false"),))


@dataclass(frozen=True)
class StatusQuery:
    """
    What a status request asks for.

    :ivar session: the session id whose credential to add, or None.
    :ivar watch: whether to keep the answer coming.
    """

    session: str | None = None
    watch: bool = False


def parse_query(args: Mapping[bytes, Sequence[bytes]]) -> StatusQuery:
    """
    The :obj:`StatusQuery` of a request's query arguments, as twisted.web
    decoded them.

    :raises APIError: a 400 naming what is wrong.
    """
    for name in (b"session", b"watch"):
        if len(args.get(name, ())) > 1:
            raise _bad_query(f"the {name.decode()} parameter is given more than once")
    session = None
    if b"session" in args:
        # Decoded as the session header is (ccm.pool.sessions).
        session = args[b"session"][0].decode("latin-1").strip()
        if not 0 < len(session) <= MAX_SESSION_ID_LENGTH:
            raise _bad_query(
                "the session parameter must be a Claude Code session id "
                f"(1 to {MAX_SESSION_ID_LENGTH} characters, as in X-Claude-Code-Session-Id)"
            )
    watch = args.get(b"watch", [b"false"])[0]
    if watch not in (b"true", b"false"):
        raise _bad_query("the watch parameter must be true or false")
    return StatusQuery(session=session, watch=watch == b"true")


def status_document(
    pool: Pool, session: str | None, now: float, share: Mapping[str, object] | None = None
) -> dict[str, object]:
    """
    The status answer for ``pool``, with the ``session`` object when a
    session id is given, and the caller's ``share`` figures when they have
    a share.
    """
    document: dict[str, object] = dict(pool.status())
    if share:
        document["share"] = dict(share)
    if session is not None:
        member = pool.serving(session)
        document["session"] = (
            credential_standing(member, now) if member is not None else {"credential": None}
        )
    return document


def _encode(document: dict[str, object]) -> bytes:
    return json.dumps(document, sort_keys=True).encode("utf-8") + b"\n"


class StatusResource(Resource):
    """
    Report the caller's pool utilization, once or as a watch.

    :param watches: where the service keeps its open watches.
    :param share_status: the share figures of a caller in a pool, empty
        when it has no share.
    """

    isLeaf = True

    def __init__(
        self,
        authenticator: Authenticator,
        pool_for: Callable[[Caller], Pool],
        clock: IReactorTime,
        watches: StatusWatches,
        share_status: Callable[[Caller, Pool], Mapping[str, object]] | None = None,
    ) -> None:
        super().__init__()
        self._share_status = share_status or (lambda caller, pool: {})
        self._authenticator = authenticator
        self._pool_for = pool_for
        self._clock = clock
        self._watches = watches

    def render(self, request: Request) -> bytes | int:
        if request.postpath:
            # Only the exact path: not ``/ccm/v1/status/`` or below it.
            return render_error(request, NOT_FOUND)
        if request.method != b"GET":
            return render_error(request, _METHOD_NOT_ALLOWED)
        try:
            caller = self._authenticator.authenticate(request.requestHeaders)
            query = parse_query(request.args or {})
            pool = self._pool_for(caller)
            if query.watch:
                return self._watches.open(
                    request,
                    caller.user.name if caller.user is not None else "",
                    lambda: self._snapshot(request, query.session),
                )
        except APIError as error:
            return render_error(request, error)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        share = self._share_status(caller, pool)
        return _encode(status_document(pool, query.session, self._clock.seconds(), share))

    def _snapshot(self, request: Request, session: str | None) -> Snapshot:
        """
        A watch's answer now.  The caller is authenticated again each time,
        so that a reload that removed its user or changed its token ends
        its watches, and its pool is looked up again, in case a reload
        gave it another.

        :raises APIError: when the caller is no longer known.
        """
        caller = self._authenticator.authenticate(request.requestHeaders)
        pool = self._pool_for(caller)
        now = self._clock.seconds()
        return Snapshot(
            line=_encode(status_document(pool, session, now, self._share_status(caller, pool))),
            sources=tuple(member.credential for member in pool.members),
            changes_at=next_change(pool.members, now),
        )

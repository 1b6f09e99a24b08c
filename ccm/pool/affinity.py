# -*- test-case-name: tests.pool.test_affinity -*-
"""
What ties a request to a credential besides its session: the sub-agent
that sends it, and, for a prompt-cache keepalive, the earlier answer whose
cache it keeps warm.

Claude Code names a sub-agent in ``x-claude-code-agent-id`` and the agent
that started it in ``x-claude-code-parent-agent-id`` (a sub-agent also sends
its conversation's session id).  Its keepalive, ``POST
/v1/messages/cache_touch`` with the body ``{"request_id": ...}``, names the
``request-id`` header of an earlier ``/v1/messages`` answer: only the
subscription that gave that answer holds its cache.

A balancer remembers in an :obj:`AffinityTable` which credential served each
recent ``/v1/messages`` answer and which credential each sub-agent is on;
:obj:`ccm.pool.select.BalancerPool.place` uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence

from twisted.web.http_headers import Headers

from ccm.pool.member import PoolMember
from ccm.pool.serving import Unusable
from ccm.pool.sessions import MemorySessionTable, session_id_of
from ccm.units import format_duration, whole_seconds_until
from ccm.web.errors import APIError

AGENT_HEADER = b"x-claude-code-agent-id"
PARENT_AGENT_HEADER = b"x-claude-code-parent-agent-id"
MESSAGES_PATH = b"/v1/messages"
CACHE_TOUCH_PATH = b"/v1/messages/cache_touch"
REQUEST_ID_HEADER = b"request-id"
MAX_ID_LENGTH = 256
# The longest prompt-cache lifetime is one hour from its last use; an
# answer neither served nor touched for twice that has no cache left.
REQUEST_IDLE_SECONDS = 2 * 3600
MAX_REQUESTS = 5000
AGENT_IDLE_SECONDS = 2 * 3600
MAX_AGENTS = 2000


def _clean(value: object) -> str:
    if not isinstance(value, str):
        return ""
    value = value.strip()
    return value if 0 < len(value) <= MAX_ID_LENGTH else ""


def _header(headers: Headers, name: bytes) -> str:
    for value in headers.getRawHeaders(name, []):
        found = _clean(value.decode("latin-1"))
        if found:
            return found
    return ""


@dataclass(frozen=True)
class Call:
    """
    What a pool places a request by.

    :ivar session_id: the conversation (see :obj:`session_id_of`), or empty.
    :ivar agent_id: the sub-agent that sends it, or empty.
    :ivar parent_agent_id: the agent that started that sub-agent, or empty.
    :ivar touches: for a cache keepalive, the request id of the answer whose
        cache it keeps; otherwise empty.
    :ivar is_message: whether it is a ``POST /v1/messages``, the conversation
        itself: its answer's request id is remembered, and it may move its
        session to rebalance.  Every other call follows.
    """

    session_id: str = ""
    agent_id: str = ""
    parent_agent_id: str = ""
    touches: str = ""
    is_message: bool = False


def call_of(
    method: bytes, path: bytes, headers: Headers, document: dict[str, Any] | None
) -> Call:
    """
    The :obj:`Call` of a request.

    :param path: the request's normalized path, without its query.
    :param document: its body as a JSON object, or None when it is not one.
    """
    touches = ""
    if method == b"POST" and path == CACHE_TOUCH_PATH and document is not None:
        touches = _clean(document.get("request_id"))
    return Call(
        session_id=session_id_of(headers, document),
        agent_id=_header(headers, AGENT_HEADER),
        parent_agent_id=_header(headers, PARENT_AGENT_HEADER),
        touches=touches,
        is_message=method == b"POST" and path == MESSAGES_PATH,
    )


class AffinityTable(Protocol):
    """
    Which credential served each recent ``/v1/messages`` answer of one
    balancer, and which credential each of its sub-agents is on: like
    :obj:`ccm.pool.sessions.SessionTable`, the seam where a store shared by
    several ccm processes can replace :obj:`MemoryAffinityTable`, and
    synchronous for the same reason.
    """

    def request_credential(self, request_id: str, now: float) -> str | None:
        """
        The tag of the credential that served ``request_id``, or None when
        it is not known (never served here, or forgotten).
        """

    def remember_request(self, request_id: str, tag: str, now: float) -> None:
        """
        Note that credential ``tag`` served, or kept warm, ``request_id`` at
        ``now``.
        """

    def agent_credential(self, agent_id: str, now: float) -> str | None:
        """
        The tag of the credential sub-agent ``agent_id`` is on, or None.
        """

    def remember_agent(self, agent_id: str, tag: str, now: float) -> None:
        """
        Put sub-agent ``agent_id`` on credential ``tag``, used at ``now``.
        """


class MemoryAffinityTable:
    """
    An affinity table in this process's memory.  Request ids unused (neither
    served nor touched) for ``request_idle_seconds`` are forgotten, and
    sub-agents idle for ``agent_idle_seconds``; past ``max_requests`` and
    ``max_agents`` the least recently used go first.
    """

    def __init__(
        self,
        request_idle_seconds: float = REQUEST_IDLE_SECONDS,
        max_requests: int = MAX_REQUESTS,
        agent_idle_seconds: float = AGENT_IDLE_SECONDS,
        max_agents: int = MAX_AGENTS,
    ) -> None:
        # Both are bounded maps of ids to tags, expiring by idle time, which
        # is what a session table is.
        self._requests = MemorySessionTable(request_idle_seconds, max_requests)
        self._agents = MemorySessionTable(agent_idle_seconds, max_agents)

    def request_credential(self, request_id: str, now: float) -> str | None:
        """
        The tag of the credential that served ``request_id``.
        """
        return self._requests.credential_of(request_id, now)

    def remember_request(self, request_id: str, tag: str, now: float) -> None:
        """
        Note that ``tag`` served or kept warm ``request_id``, as its most
        recent use.
        """
        self._requests.assign(request_id, tag, now)

    def agent_credential(self, agent_id: str, now: float) -> str | None:
        """
        The tag of the credential sub-agent ``agent_id`` is on.
        """
        return self._agents.credential_of(agent_id, now)

    def remember_agent(self, agent_id: str, tag: str, now: float) -> None:
        """
        Put sub-agent ``agent_id`` on ``tag``, as its most recent use.
        """
        self._agents.assign(agent_id, tag, now)

    @property
    def sizes(self) -> tuple[int, int]:
        """
        How many request ids and sub-agents are remembered.
        """
        return len(self._requests), len(self._agents)


def agent_member(
    call: Call, usable: Sequence[PoolMember], table: AffinityTable, now: float
) -> PoolMember | None:
    """
    The usable member a sub-agent's request goes to: the one the sub-agent
    itself is on (its own prompt cache is there), else the one its parent
    agent is on; None when neither is known and usable.
    """
    for agent in (call.agent_id, call.parent_agent_id):
        tag = table.agent_credential(agent, now) if agent else None
        member = next((m for m in usable if m.tag == tag), None)
        if member is not None:
            return member
    return None


def touched_member(
    call: Call,
    members: Sequence[PoolMember],
    table: AffinityTable,
    exclude: Iterable[str],
    now: float,
) -> PoolMember:
    """
    The member holding the cache that the keepalive ``call`` keeps warm:
    the one that served the request it names, and no other, since a touch
    through another subscription cannot keep that cache.

    :raises APIError: 404 when the request id is unknown (or its credential
        left the pool), 429 or 503 when its credential cannot serve now.
    """
    request_id = call.touches
    tag = table.request_credential(request_id, now)
    member = next((m for m in members if m.tag == tag), None)
    if member is None:
        raise APIError(
            404,
            "not_found_error",
            f"ccm cannot reach the prompt cache of request {request_id}: no answer with that "
            "id was served or kept warm through this pool in the last "
            f"{format_duration(REQUEST_IDLE_SECONDS)}, or ccm restarted since",
        )
    state = member.observe(now)
    if state.usable and member.tag not in set(exclude):
        return member
    message = (
        f"the prompt cache of request {request_id} is on credential {member.tag}, which "
        f"cannot serve now ({state.description}); ccm does not touch another subscription, "
        "which cannot keep that cache"
    )
    if state.reason is Unusable.UNAVAILABLE:
        raise APIError(503, "api_error", message, headers=(("x-should-retry", "false"),))
    retry_after = whole_seconds_until(state.until, now) if state.until > now else 60
    raise APIError(
        429,
        "rate_limit_error",
        message,
        headers=(("retry-after", str(retry_after)), ("x-should-retry", "false")),
    )


def note_served(
    call: Call, tag: str, status: int, headers: Headers, table: AffinityTable, now: float
) -> None:
    """
    Remember what a successful answer tells: which credential served a
    ``/v1/messages`` answer (by its ``request-id``), and that a keepalive
    kept its request's cache warm.
    """
    if not 200 <= status < 300:
        return
    if call.touches:
        table.remember_request(call.touches, tag, now)
    elif call.is_message:
        request_id = _header(headers, REQUEST_ID_HEADER)
        if request_id:
            table.remember_request(request_id, tag, now)

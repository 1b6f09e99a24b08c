# -*- test-case-name: tests.state.test_sessions -*-
"""
A balancer's request ids and sub-agents (:obj:`ccm.pool.affinity`) shared
by every process of one Redis: two :obj:`RedisSessionTable` maps, each
expiring by its own idle time, so that a cache keepalive reaching any
process goes to the credential that served the answer it names.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from ccm.pool.affinity import AGENT_IDLE_SECONDS, MAX_AGENTS, MAX_REQUESTS, REQUEST_IDLE_SECONDS
from ccm.state.redis import RedisStore
from ccm.state.sessions import RedisSessionTable


class RedisAffinityTable:
    """
    The affinity table of balancer ``pool``, shared through ``store``: an
    :obj:`ccm.pool.affinity.AffinityTable`.
    """

    def __init__(self, store: RedisStore, clock: IReactorTime, pool: str) -> None:
        self._requests = RedisSessionTable(
            store, clock, "request", pool, REQUEST_IDLE_SECONDS, MAX_REQUESTS
        )
        self._agents = RedisSessionTable(store, clock, "agent", pool, AGENT_IDLE_SECONDS, MAX_AGENTS)

    def request_credential(self, request_id: str, now: float) -> str | None:
        """
        The tag of the credential that served ``request_id``, in any process.
        """
        return self._requests.credential_of(request_id, now)

    def remember_request(self, request_id: str, tag: str, now: float) -> None:
        """
        Note, for every process, that ``tag`` served or kept warm ``request_id``.
        """
        self._requests.assign(request_id, tag, now)

    def agent_credential(self, agent_id: str, now: float) -> str | None:
        """
        The tag of the credential sub-agent ``agent_id`` is on, in any process.
        """
        return self._agents.credential_of(agent_id, now)

    def remember_agent(self, agent_id: str, tag: str, now: float) -> None:
        """
        Put sub-agent ``agent_id`` on ``tag``, for every process.
        """
        self._agents.assign(agent_id, tag, now)

    @property
    def sizes(self) -> tuple[int, int]:
        """
        How many request ids and sub-agents are remembered.
        """
        return len(self._requests), len(self._agents)

"""
End-to-end test of the usage polls of several processes: real ``twistd -n
ccm`` replicas on one real ``redis-server``, one of them polling each
credential's usage at a time, and another taking over when it is killed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests.replicas import SECOND_ACCESS, add_replicas, kill, start_cluster
from tests.state.test_redis import connect, eventually

#: How often the pool asks for polls here (the lease lives 30 s).
POLL_INTERVAL = "2s"


class PollTakeoverTests(unittest.TestCase):
    """
    One replica polls a credential; killed, it is replaced by another.
    """

    timeout = 180

    @inlineCallbacks
    def test_killed_poller_replaced(self) -> Any:
        """
        Of three replicas only the holder of ``poll:b``'s lease polls
        credential ``b``; after a SIGKILL of that replica, the lease
        expires, another replica takes it and the polls of ``b`` go on,
        from that replica alone.
        """
        cluster = yield start_cluster(self, replicas=0, usage=False)
        for entry in cluster.config["credentials"]:
            if entry.get("type") == "balancer":
                entry["poll_interval"] = POLL_INTERVAL
        yield add_replicas(self, cluster, 3)
        store = connect(self, cluster.redis, key_prefix="test:")
        yield eventually(lambda: store.connected)
        lease = store.key("lease", "poll:b")

        @inlineCallbacks
        def holder() -> Any:
            value = yield store.command("GET", lease)
            return int(str(value).split(":")[1]) if value else 0

        def polls_of_b() -> int:
            return sum(
                1
                for r in cluster.fake.requests
                if r.path == "/api/oauth/usage"
                and (r.header("authorization") or "") == f"Bearer {SECOND_ACCESS}"
            )

        first = 0
        for _ in range(200):
            first = yield holder()
            if first and polls_of_b() >= 2:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        (victim,) = [r for r in cluster.replicas if r.pid == first]
        # Polls come from the holder alone: two in a row, with the others
        # running, and no burst of three.
        before = polls_of_b()
        yield deferLater(reactor, 4.5, lambda: None)
        self.assertLessEqual(polls_of_b() - before, 3)
        yield kill(victim)
        others = [r.pid for r in cluster.replicas if r is not victim]
        second = 0
        for _ in range(500):
            second = yield holder()
            if second in others:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertIn(second, others)
        after = polls_of_b()
        yield eventually(lambda: polls_of_b() >= after + 2, timeout=20)
        (successor,) = [r for r in cluster.replicas if r.pid == second]
        self.assertIn("now holds lease poll:b", successor.output())

"""
End-to-end tests of the shared usage book: real ``twistd -n ccm`` replicas
on one real ``redis-server`` count into the same usages files, written by
one replica at a time.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from ccm.state.usage import SharedUsageCounters
from tests import e2e
from tests.replicas import ALICE, BOB, Cluster, client, kill, send_message, start_cluster
from tests.state.test_redis import connect, eventually

TAGS = ("a", "b")


def file_requests_of(view: SharedUsageCounters) -> int:
    """
    The requests ``view`` last read from Redis.
    """
    return sum(c.total.request_count for c in view.snapshot().combinations)


def file_totals(cluster: Cluster, tags: tuple[str, ...] = TAGS) -> dict[str, int]:
    """
    What the usages files of ``a`` and ``b`` hold together: requests,
    input and output tokens, and alice's and bob's requests.
    """
    totals = {"requests": 0, "input": 0, "output": 0, "alice": 0, "bob": 0}
    for tag in tags:
        path = os.path.join(cluster.directory, f"usages-{tag}.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            document = json.load(f)
        for combination in document["combinations"]:
            totals["requests"] += combination["total"]["request_count"]
            totals["input"] += combination["total"]["input_tokens"]
            totals["output"] += combination["total"]["output_tokens"]
            for user in ("alice", "bob"):
                totals[user] += combination["by_user"].get(user, {}).get("request_count", 0)
    return totals


class Sent:
    """
    The totals of the requests that got a 200, as the replies said.
    """

    def __init__(self) -> None:
        self.totals = {"requests": 0, "input": 0, "output": 0, "alice": 0, "bob": 0}

    @inlineCallbacks
    def send(self, testcase: unittest.TestCase, http: Any, replica: e2e.CcmProcess, token: str) -> Any:
        code, body = yield send_message(http, replica, token)
        testcase.assertEqual(code, 200, body)
        self.totals["requests"] += 1
        self.totals["input"] += body["usage"]["input_tokens"]
        self.totals["output"] += body["usage"]["output_tokens"]
        self.totals["alice" if token == ALICE else "bob"] += 1


@inlineCallbacks
def stop_one_by_one(replicas: list[e2e.CcmProcess]) -> Any:
    """
    SIGTERM each replica and wait for it to end before the next: the last
    one's final save writes the full totals.
    """
    for replica in replicas:
        yield replica.stop()


class SharedUsageTests(unittest.TestCase):
    """
    Usage counted by three replicas ends up in the usages files exactly
    once, also when one of them is killed.
    """

    timeout = 180

    @inlineCallbacks
    def test_totals_equal_requests(self) -> Any:
        """
        Requests spread over three replicas, by two users: once the
        replicas stopped, the usages files hold exactly their requests and
        tokens, per user too, in the file format of today.
        """
        cluster = yield start_cluster(self, replicas=3)
        http = client(self)
        sent = Sent()
        for n in range(12):
            yield sent.send(self, http, cluster.replicas[n % 3], (ALICE, BOB)[n % 2])
        yield stop_one_by_one(cluster.replicas)
        self.assertEqual(file_totals(cluster), sent.totals)

    @inlineCallbacks
    def test_killed_replica(self) -> Any:
        """
        The replica writing usage file ``a`` is killed (SIGKILL) after its
        counts reached Redis: the others go on serving, one of them takes
        over the lease and writes the file, and the files hold exactly the
        requests that got a 200, none twice.
        """
        cluster = yield start_cluster(self, replicas=3)
        store = connect(self, cluster.redis, key_prefix="test:")
        yield eventually(lambda: store.connected)
        lease = store.key("lease", "usage-file:a")
        holders: list[str] = []

        @inlineCallbacks
        def read_holder() -> Any:
            holders.append((yield store.command("GET", lease)) or "")

        def holder_pid() -> int:
            return int(str(holders[-1]).split(":")[1]) if holders[-1] else 0

        for _ in range(100):
            yield read_holder()
            if holder_pid():
                break
            yield deferLater(reactor, 0.1, lambda: None)
        (victim,) = [r for r in cluster.replicas if r.pid == holder_pid()]
        others = [r for r in cluster.replicas if r is not victim]
        http = client(self)
        sent = Sent()
        for n in range(9):
            yield sent.send(self, http, cluster.replicas[n % 3], (ALICE, BOB)[n % 2])
        # Traffic to the victim stops; its counts reach Redis before the kill.
        views = [SharedUsageCounters(store, tag, reactor) for tag in TAGS]

        @inlineCallbacks
        def in_redis() -> Any:
            total = 0
            for view in views:
                yield view.flush()
                total += file_requests_of(view)
            return total

        seen: list[int] = [0]

        @inlineCallbacks
        def poll() -> Any:
            while seen[-1] != sent.totals["requests"]:
                seen.append((yield in_redis()))
                yield deferLater(reactor, 0.1, lambda: None)

        yield poll()
        at_kill = file_requests_of(views[0])
        yield kill(victim)
        for n in range(8):
            yield sent.send(self, http, others[n % 2], (ALICE, BOB)[n % 2])
        # A survivor takes the lease (within its 15 s) and writes the file.
        for _ in range(300):
            yield read_holder()
            if holder_pid() and holder_pid() != victim.pid:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertIn(holder_pid(), [r.pid for r in others])
        # The file of a then holds what Redis holds, more than at the kill:
        # only a survivor can have written it.
        file_a: list[int] = []

        @inlineCallbacks
        def file_caught_up() -> Any:
            for _ in range(300):
                yield views[0].flush()
                file_a.append(file_totals(cluster, ("a",))["requests"])
                if file_a[-1] == file_requests_of(views[0]) > at_kill:
                    return
                yield deferLater(reactor, 0.1, lambda: None)
            self.fail(f"usages-a.json not rewritten: {file_a[-5:]}")

        yield file_caught_up()
        self.assertIn("now holds lease usage-file:a", "".join(r.output() for r in others))
        yield stop_one_by_one(others)
        self.assertEqual(file_totals(cluster), sent.totals)

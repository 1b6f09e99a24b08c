"""
Several real ``twistd -n ccm`` processes sharing one real ``redis-server``:
the replicas of the scaling tests.  Each replica has its own working
directory and port; they share the configuration (so the credentials
files, usage files and fake upstream) and the Redis server.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from tests import e2e
from tests.fake_anthropic import FakeAnthropic
from tests.fixtures import expiry_ms, write_credentials
from tests.redisserver import RedisServer, start_redis

ALICE = "ak-ccm-replicas-alice"
BOB = "ak-ccm-replicas-bob"
SECOND_ACCESS = "sk-ant-oat01-fake-replicas-second"


@dataclass
class Cluster:
    """
    The fake upstream, the Redis server, the shared configuration and the
    running replicas of one test.
    """

    fake: FakeAnthropic
    url: str
    redis: RedisServer
    directory: str
    config: dict[str, Any]
    replicas: list[e2e.CcmProcess] = field(default_factory=list)


def pool_config(
    fake_url: str,
    redis: RedisServer,
    paths: Mapping[str, str],
    usages: Mapping[str, str] = {},
    users: Sequence[Mapping[str, Any]] = (),
    key_prefix: str = "test:",
) -> dict[str, Any]:
    """
    A configuration with credentials ``paths`` (tag to credentials file)
    in a ``pool`` balancer, shared through ``redis``.
    """
    credentials: list[dict[str, Any]] = []
    for tag, path in paths.items():
        entry: dict[str, Any] = {"tag": tag, "credential_path": path}
        if tag in usages:
            entry["usages_path"] = usages[tag]
        credentials.append(entry)
    credentials.append(
        {"tag": "pool", "type": "balancer", "strategy": "round_robin", "credentials": list(paths)}
    )
    return {
        "endpoint": "tcp:0:interface=127.0.0.1",
        "upstream_url": fake_url,
        "oauth_token_url": fake_url + "/v1/oauth/token",
        "credentials": credentials,
        "users": list(users)
        or [
            {"name": "alice", "token": ALICE, "credential": "pool"},
            {"name": "bob", "token": BOB, "credential": "pool"},
        ],
        "state": {
            "type": "redis",
            "url": redis.url,
            "key_prefix": key_prefix,
            **({"password_file": _password_file(redis)} if redis.password else {}),
        },
    }


def _password_file(redis: RedisServer) -> str:
    path = os.path.join(redis.directory, "password")
    with open(path, "w") as f:
        f.write(redis.password)
    return path


@inlineCallbacks
def start_cluster(
    testcase: unittest.TestCase,
    replicas: int = 3,
    usage: bool = True,
    expires_in: float = 86400,
    redis_password: str = "",
) -> Any:
    """
    A fake upstream accepting two subscriptions (``a`` with the fake's own
    token, ``b``), a Redis server and ``replicas`` ccm processes serving
    alice and bob from the two in one pool; with ``usage`` each
    credential has a usage file; with ``redis_password`` the Redis server
    asks for it, and the replicas read it from a file.

    :return: fires with the :obj:`Cluster`.
    """
    fake, url = e2e.serve_fake_anthropic(testcase)
    fake.extra_access_tokens.add(SECOND_ACCESS)
    redis = yield start_redis(testcase, password=redis_password)
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    paths, usages = {}, {}
    for tag, access in (("a", fake.access_token), ("b", SECOND_ACCESS)):
        paths[tag] = os.path.join(directory, f"{tag}.json")
        write_credentials(paths[tag], access, f"sk-ant-ort01-{tag}", expiry_ms(expires_in))
        if usage:
            usages[tag] = os.path.join(directory, f"usages-{tag}.json")
    config = pool_config(url, redis, paths, usages)
    cluster = Cluster(fake, url, redis, directory, config)
    yield add_replicas(testcase, cluster, replicas)
    return cluster


@inlineCallbacks
def add_replicas(testcase: unittest.TestCase, cluster: Cluster, count: int) -> Any:
    """
    Start ``count`` more replicas of ``cluster``'s configuration, at once,
    and wait until each has reached Redis: before that a replica serves
    from what it knows alone (limits counted per process, sessions placed
    without the others), which is not what a test of sharing means to see.
    """
    started = yield gatherResults(
        [e2e.start_ccm(testcase, cluster.config) for _ in range(count)], consumeErrors=True
    )
    cluster.replicas.extend(started)
    http = client(testcase)
    yield gatherResults([wait_connected(http, replica) for replica in started], consumeErrors=True)
    return started


@inlineCallbacks
def wait_connected(http: HTTPClient, replica: e2e.CcmProcess, timeout: float = 30.0) -> Any:
    """
    Poll ``replica``'s health until it says its shared state is
    ``connected``; fail after ``timeout`` seconds.
    """
    deadline = reactor.seconds() + timeout
    while True:
        response = yield http.get(replica.url + "/ccm/v1/health")
        document = json.loads((yield response.content()))
        if document.get("state") == "connected":
            return
        if reactor.seconds() > deadline:
            raise AssertionError(f"replica on {replica.url} never reached Redis: {document}")
        yield deferLater(reactor, 0.05, lambda: None)


def client(testcase: unittest.TestCase) -> HTTPClient:
    """
    A treq client without kept-alive connections, cleaned up with the test.
    """
    pool = HTTPConnectionPool(reactor, persistent=False)
    testcase.addCleanup(pool.closeCachedConnections)
    return HTTPClient(Agent(reactor, pool=pool))


@inlineCallbacks
def send_message(
    http: HTTPClient, replica: e2e.CcmProcess, token: str, session: str = "", text: str = "hi"
) -> Any:
    """
    One non-streaming ``POST /v1/messages`` through ``replica`` as the user
    of ``token``, in Claude Code's ``session`` when given.

    :return: fires with (status, parsed body).
    """
    headers: dict[bytes | str, list[bytes | str]] = {
        "authorization": [f"Bearer {token}"],
        "content-type": ["application/json"],
        "anthropic-version": ["2023-06-01"],
    }
    if session:
        headers["x-claude-code-session-id"] = [session]
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": text}],
    }
    response = yield http.post(
        replica.url + "/v1/messages", data=json.dumps(body).encode(), headers=headers
    )
    content = yield response.content()
    return response.code, json.loads(content)


def kill(replica: e2e.CcmProcess) -> Any:
    """
    SIGKILL ``replica`` (no shutdown of any kind) and fire once it is
    reaped.
    """
    return replica._child.kill()

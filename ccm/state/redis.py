# -*- test-case-name: tests.state.test_redis -*-
"""
The connection of one ccm process to the Redis server it shares with the
others (the ``state`` key).

txredisapi speaks the protocol (commands, Lua scripts, pub/sub); Twisted's
:obj:`ClientService` makes and remakes the two connections on the reactor
it is given: one for commands, one for the channels this process listens
to.  While Redis is unreachable every command fails at once with
:obj:`StateUnavailable` instead of queueing, so that nothing waits for it:
each part of the shared state keeps serving from its local copy and
catches up when the connection returns (see ``docs/scaling.md``).
"""

from __future__ import annotations

import os
import socket
import secrets
from typing import Any, Callable, Sequence, cast

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ccm.config.state import StateConfig
from ccm.state.address import endpoint_for
from ccm.state.closing import KeptOpen

#: How long a command may wait for its answer before the connection is
#: taken for dead (and remade).
REPLY_TIMEOUT_SECONDS = 5.0
#: How often an idle connection is checked with a PING.
PING_INTERVAL_SECONDS = 5.0


class StateUnavailable(Exception):
    """
    The Redis server is not reachable now: the caller goes on with what it
    knows and tries again later.
    """


def process_id() -> str:
    """
    A name for this process among the others, unique even across restarts:
    host, pid and a random part.  Leases are held in its name.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class _Subscriber(txredisapi.SubscriberProtocol):
    """
    The connection that listens to channels; each message goes to the
    store.
    """

    store: "RedisStore"

    def messageReceived(self, pattern: str | None, channel: str, message: str) -> None:
        self.store._deliver(channel, message)


class _ProtocolFactory(Factory):
    """
    Builds the protocol of one of the store's connections, authenticated
    and on its database, timed by the store's reactor.
    """

    # Read by txredisapi's protocol: log refusals rather than fail a caller.
    isLazy = True

    def __init__(self, store: "RedisStore", protocol: type[txredisapi.RedisProtocol]) -> None:
        self._store = store
        self._protocol = protocol

    def buildProtocol(self, addr: object) -> txredisapi.RedisProtocol:
        config = self._store.config
        built = self._protocol(
            charset="utf-8",
            replyTimeout=REPLY_TIMEOUT_SECONDS,
            password=config.password or None,
            username=config.username or None,
            dbid=config.database or None,
            convertNumbers=True,
        )
        built.factory = self
        built.callLater = self._store._reactor.callLater
        if isinstance(built, _Subscriber):
            built.store = self._store
        return built

    # What txredisapi's protocol calls when AUTH or SELECT is refused: the
    # service keeps retrying with its back-off, and says why each time.
    def stopTrying(self) -> None:
        """
        Nothing to stop: the client service retries.
        """

    def connectionError(self, why: str) -> None:
        """
        Say why the server refused this connection.
        """
        self._store._refused(why)


def _ready(protocol: txredisapi.RedisProtocol) -> Deferred[txredisapi.RedisProtocol]:
    """
    Fires with ``protocol`` once it is authenticated and on its database,
    or fails when it is closed before.
    """
    ready: Deferred[txredisapi.RedisProtocol] = Deferred()

    def connected(result: txredisapi.RedisProtocol) -> None:
        if not ready.called:
            ready.callback(result)

    def lost(result: object) -> None:
        if not ready.called:
            ready.errback(ConnectionDone("closed before it was ready"))

    protocol.whenConnected().addCallback(connected)
    protocol.whenDisconnected().addCallback(lost)
    return ready


class RedisStore(Service, KeptOpen):
    """
    This process's connections to the shared Redis server, and what it
    knows of them: whether they are up, and who wants to hear when they
    come and go.
    """

    log = Logger()

    def __init__(
        self,
        config: StateConfig,
        reactor: IReactorTime,
        endpoint: IStreamClientEndpoint | None = None,
        name: str | None = None,
    ) -> None:
        self.config = config
        self._reactor = reactor
        self._endpoint = endpoint if endpoint is not None else endpoint_for(config, reactor)
        #: This process's name in leases and messages.
        self.process_id = name or process_id()
        self._commands: txredisapi.RedisProtocol | None = None
        self._subscriber: _Subscriber | None = None
        self._channels: dict[str, list[Callable[[str], None]]] = {}
        self._on_connected: list[Callable[[], None]] = []
        self._on_disconnected: list[Callable[[], None]] = []
        self._on_listening: list[Callable[[], None]] = []
        # Whether the channels are listened to on the current connection.
        self._heard = False
        self._services: list[ClientService] = []
        self._ping = LoopingCall(self._check)
        self._ping.clock = reactor
        self._ever_connected = False
        self._last_refusal = ""
        KeptOpen.__init__(self)

    @property
    def connected(self) -> bool:
        """
        Whether commands can be sent now.
        """
        return self._commands is not None

    def key(self, *parts: str) -> str:
        """
        The full name of a key (or channel) of this installation: the key
        prefix, then ``parts`` joined by colons.
        """
        return self.config.key_prefix + ":".join(parts)

    def command(self, *args: Any) -> Deferred[Any]:
        """
        Send one command; fails with :obj:`StateUnavailable` at once while
        the server is unreachable.
        """
        if self._commands is None or not self._commands.connected:
            return fail(StateUnavailable("Redis is unreachable"))
        return cast("Deferred[Any]", self._commands.execute_command(*args))

    def evaluate(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Deferred[Any]:
        """
        Run the Lua ``script`` atomically on ``keys`` with ``args`` (by its
        hash once the server knows it).
        """
        if self._commands is None or not self._commands.connected:
            return fail(StateUnavailable("Redis is unreachable"))
        return cast("Deferred[Any]", self._commands.eval(script, list(keys), list(args)))

    def publish(self, channel: str, message: str) -> Deferred[Any]:
        """
        Tell every process listening to ``channel`` (this one too).
        """
        return self.command("PUBLISH", channel, message)

    def subscribe(self, channel: str, receive: Callable[[str], None]) -> None:
        """
        Call ``receive`` with each message of ``channel``, from now on and
        across reconnections (messages sent while disconnected are lost:
        :obj:`when_connected` is the time to catch up).
        """
        first = channel not in self._channels
        self._channels.setdefault(channel, []).append(receive)
        if first and self._subscriber is not None:
            self._subscriber.subscribe(channel).addErrback(self._log_failure, "subscribe")

    def when_connected(self, callback: Callable[[], None], listening: bool = False) -> None:
        """
        Call ``callback`` each time the connection is made or remade (with
        ``listening``: each time all channels are listened to again and
        commands can be sent, whichever came last).
        """
        (self._on_listening if listening else self._on_connected).append(callback)

    def when_disconnected(self, callback: Callable[[], None]) -> None:
        """
        Call ``callback`` each time the connection is lost.
        """
        self._on_disconnected.append(callback)

    def startService(self) -> None:
        super().startService()
        retry = backoffPolicy(initialDelay=0.5, maxDelay=10.0)
        commands = ClientService(
            self._endpoint,
            _ProtocolFactory(self, txredisapi.RedisProtocol),
            retryPolicy=retry,
            clock=self._reactor,
        )
        subscriber = ClientService(
            self._endpoint,
            _ProtocolFactory(self, _Subscriber),
            retryPolicy=retry,
            clock=self._reactor,
        )
        self._services = [commands, subscriber]
        for service in self._services:
            service.startService()
        self._follow(commands)
        self._follow_subscriber(subscriber)
        self._ping.start(PING_INTERVAL_SECONDS, now=False)

    def stopService(self) -> Deferred[None]:
        return self.last_writes().addCallback(lambda _: self._stop())

    def _stop(self) -> Deferred[None]:
        super().stopService()
        if self._ping.running:
            self._ping.stop()
        services, self._services = self._services, []
        self._commands = None
        self._subscriber = None
        stopped = gatherResults([s.stopService() for s in services], consumeErrors=True)
        return stopped.addCallback(lambda _: None)

    def _follow(self, service: ClientService) -> None:
        """
        Track the command connection: up when it is ready, down when it is
        lost, then wait for the next one.
        """

        def up(protocol: txredisapi.RedisProtocol) -> None:
            if not self.running:
                return
            self._commands = protocol
            protocol.whenDisconnected().addCallback(down)
            self._last_refusal = ""
            if self._ever_connected:
                self.log.info("Shared state at {address} reachable again", address=self.config.address)
            else:
                self.log.info("Shared state at {address} connected", address=self.config.address)
            self._ever_connected = True
            for callback in list(self._on_connected):
                self._run(callback)
            if self._heard:
                self._caught_up()

        def down(protocol: object) -> None:
            if self._commands is None or not self.running:
                return
            self._commands = None
            self.log.warn(
                "Shared state at {address} unreachable: serving with what this process knows",
                address=self.config.address,
            )
            for callback in list(self._on_disconnected):
                self._run(callback)
            # Not from inside the client service's own handling of the loss.
            self._reactor.callLater(0, self._follow, service)

        self._when_ready(service, up, lambda: self._follow(service))

    def _follow_subscriber(self, service: ClientService) -> None:
        """
        Once the listening connection is ready, listen to every channel
        asked for so far; again after each reconnection.
        """

        def listen(ready: _Subscriber) -> None:
            if not self.running:
                return
            self._subscriber = ready
            ready.whenDisconnected().addCallback(lost)
            if self._channels:
                subscribed = ready.subscribe(list(self._channels)).addCallback(self._listening)
                subscribed.addErrback(self._log_failure, "subscribe")
            else:
                self._listening(None)

        def lost(protocol: object) -> None:
            self._subscriber = None
            self._heard = False
            if self.running:
                self._reactor.callLater(0, self._follow_subscriber, service)

        self._when_ready(service, listen, lambda: self._follow_subscriber(service))

    def _when_ready(
        self,
        service: ClientService,
        ready: Callable[[Any], None],
        again: Callable[[], None],
    ) -> None:
        """
        Call ``ready`` with the next connection of ``service`` once it is
        authenticated and on its database; ``again`` when it is lost
        before, to wait for the one after.
        """

        def connected(protocol: txredisapi.RedisProtocol) -> None:
            _ready(protocol).addCallbacks(
                ready, lambda failure: self.running and self._reactor.callLater(0, again)
            )

        # whenConnected fails only when the service stops.
        service.whenConnected().addCallbacks(connected, lambda failure: None)

    def _deliver(self, channel: str, message: str) -> None:
        for receive in list(self._channels.get(channel, ())):
            try:
                receive(message)
            except Exception:
                self.log.failure("Handling a message of {channel}", channel=channel)

    def _run(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            self.log.failure("Following the shared state's connection")

    def _listening(self, reply: object) -> None:
        self._heard = True
        if self.connected:
            self._caught_up()

    def _caught_up(self) -> None:
        """
        Both connections are up, the channels listened to: the time for
        the followers to read what they may have missed.
        """
        for callback in list(self._on_listening):
            self._run(callback)

    def _check(self) -> Deferred[Any] | None:
        """
        PING the server: an answer that does not come closes the
        connection (the reply timeout), which marks it down.
        """
        if self._commands is None:
            return None
        return self.command("PING").addErrback(lambda failure: None)

    def _refused(self, why: str) -> None:
        if why != self._last_refusal:
            self._last_refusal = why
            self.log.error(
                "Shared state at {address} refused ccm's connection: {why}",
                address=self.config.address,
                why=why,
            )

    def _log_failure(self, failure: Any, what: str) -> None:
        self.log.warn("Shared state: {what} failed: {why}", what=what, why=failure.getErrorMessage())

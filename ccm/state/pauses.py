# -*- test-case-name: tests.state.test_pauses -*-
"""
An admin's pause of a credential, shared by every process of one Redis: an
admin who pauses a subscription on one replica's dashboard pauses it on all
of them, and resuming it anywhere resumes it everywhere.

Each pause is a hash per credential (who, since when) that lives until it
is lifted; every change is published, and a process (re)connecting reads
them all.  A pause is an operator's decision, so unlike the window state it
is kept across restarts of ccm (though not of a Redis without persistence).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from twisted.application.service import Service
from twisted.internet.defer import gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from ccm.credentials.credential import Credential
from ccm.state.redis import RedisStore

# KEYS: the hash.  ARGV: by ('' lifts the pause), since, channel, message.
_WRITE = """
if ARGV[1] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'by', ARGV[1], 'since', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""


class SharedPauses(Service):
    """
    Keeps the admin pauses of ``credentials`` (by tag) the same in every
    process of ``store``.
    """

    log = Logger()

    def __init__(self, store: RedisStore, credentials: Mapping[str, Credential]) -> None:
        self._store = store
        self._credentials = dict(credentials)
        self._channel = store.key("events", "pause")
        # What each credential's pause was when last seen, to tell a local
        # change (sent) from one applied here (not sent again).
        self._seen: dict[str, str] = {tag: self._by(c) for tag, c in self._credentials.items()}
        self._unsubscribe: list[Callable[[], None]] = []
        # Changes made here that Redis has not taken yet (it was away):
        # sent again, rather than overwritten, when it returns.
        self._unsent: set[str] = set()
        store.subscribe(self._channel, self._heard)
        store.when_connected(self._load, listening=True)

    def startService(self) -> None:
        super().startService()
        for tag, credential in self._credentials.items():
            self._unsubscribe.append(credential.subscribe(self._follower(tag)))

    def stopService(self) -> None:
        super().stopService()
        for end in self._unsubscribe:
            end()
        self._unsubscribe = []

    def _follower(self, tag: str) -> Callable[[], None]:
        return lambda: self._changed(tag)

    @staticmethod
    def _by(credential: Credential) -> str:
        pause = credential.admin_pause
        return pause.by if pause is not None else ""

    def _key(self, tag: str) -> str:
        return self._store.key("pause", tag)

    def _changed(self, tag: str) -> None:
        """
        After any change of credential ``tag``: when its pause changed
        here, tell the others.
        """
        credential = self._credentials[tag]
        by = self._by(credential)
        if by == self._seen.get(tag, ""):
            return
        self._seen[tag] = by
        self._send(tag)

    def _send(self, tag: str) -> None:
        """
        Store credential ``tag``'s pause as it is here, and tell the others.
        """
        credential = self._credentials[tag]
        by = self._by(credential)
        self._unsent.add(tag)
        pause = credential.admin_pause
        since = pause.since if pause is not None else 0.0
        message = json.dumps({"tag": tag, "by": by, "since": since, "from": self._store.process_id})
        d = self._store.evaluate(_WRITE, [self._key(tag)], [by, repr(since), self._channel, message])
        d.addCallbacks(lambda _: self._unsent.discard(tag), self._not_sent, errbackArgs=(tag,))

    def _not_sent(self, failure: Failure, tag: str) -> None:
        self.log.warn(
            "The pause of credential {tag} is known here only: {why}",
            tag=tag,
            why=failure.getErrorMessage(),
        )

    def _heard(self, message: str) -> None:
        try:
            news = json.loads(message)
            tag, by, sender = news["tag"], str(news["by"]), news["from"]
        except (ValueError, KeyError, TypeError):
            self.log.warn("Ignored a malformed message on {channel}", channel=self._channel)
            return
        if sender != self._store.process_id and tag in self._credentials:
            self._apply(tag, by)

    def _apply(self, tag: str, by: str) -> None:
        """
        Make credential ``tag``'s pause what another process said: paused
        by ``by``, or not paused ('').
        """
        credential = self._credentials[tag]
        if by == self._by(credential):
            return
        self._seen[tag] = by
        if by:
            credential.pause(by)
        else:
            credential.resume()

    def _load(self) -> None:
        """
        Read every pause, as a process (re)connecting does; a change made
        here while Redis was away is sent instead.
        """
        for tag in list(self._unsent):
            self._send(tag)
        tags = [tag for tag in self._credentials if tag not in self._unsent]
        reads = [self._store.command("HGET", self._key(tag), "by") for tag in tags]

        def apply(found: list[Any]) -> None:
            for tag, by in zip(tags, found):
                self._apply(tag, str(by) if by is not None else "")

        def failed(failure: Failure) -> None:
            self.log.warn("Could not read the shared pauses: {why}", why=failure.getErrorMessage())

        gatherResults(reads, consumeErrors=True).addCallbacks(apply, failed)

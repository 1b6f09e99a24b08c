# -*- test-case-name: tests.state.test_tokens -*-
"""
The credentials' tokens kept in Redis, one hash per credential
(``<prefix>cred:<tag>``): the whole ``claudeAiOauth`` object as JSON (keys
ccm does not know included), encrypted with Fernet when the state has an
``encryption_key_file``; its version, which only grows; its expiry in
clear, so that a script can tell which of two tokens is newer without the
key; and the fence of the refresh lease it was written under.

Two scripts write it, each atomically and each announcing the new version
on the channel ``<prefix>events:credentials``:

- :obj:`TokenVault.offer`, an import: written only when Redis has no token
  for the credential or one that expires earlier;
- :obj:`TokenVault.write`, a refresh: written only when the writer's fence
  is still the refresh lease's current one and the hash is still at the
  version the writer refreshed from, so a writer that stalled past its
  lease cannot put an older token over a newer one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ccm.credentials.file import CredentialFileError, OAuthTokens, tokens_from_document
from ccm.state.redis import RedisStore

# KEYS: the hash.  ARGV: document, expiry (ms), sender, tag, channel.
# Returns the new version, or 0 when Redis holds a token as new already.
_OFFER = """
local known = redis.call('HGET', KEYS[1], 'expires_at')
if known and tonumber(known) >= tonumber(ARGV[2]) then
  return 0
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'expires_at', ARGV[2], 'fence', 0, 'writer', ARGV[3])
redis.call('PUBLISH', ARGV[5], cjson.encode({tag=ARGV[4], version=version, from=ARGV[3]}))
return version
"""

# KEYS: the hash, the refresh lease's fence counter.  ARGV: document,
# expiry (ms), sender, tag, channel, fence, the version refreshed from.
# Returns the new version, or 0 when the fence or the version moved on.
_WRITE = """
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[6]) then
  return 0
end
if tonumber(redis.call('HGET', KEYS[1], 'version') or '0') ~= tonumber(ARGV[7]) then
  return 0
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'expires_at', ARGV[2], 'fence', ARGV[6], 'writer', ARGV[3])
redis.call('PUBLISH', ARGV[5], cjson.encode({tag=ARGV[4], version=version, from=ARGV[3]}))
return version
"""


class VaultError(Exception):
    """
    A credential's hash cannot be used (a wrong key, a broken document);
    the message never quotes it.
    """


@dataclass(frozen=True)
class TokenRecord:
    """
    One version of a credential's ``claudeAiOauth`` object.
    """

    version: int
    oauth: dict[str, Any] = field(repr=False)

    @property
    def tokens(self) -> OAuthTokens:
        """
        The tokens of the object (it was checked when it was made).
        """
        return tokens_of(self.oauth, "the shared state")


def tokens_of(oauth: dict[str, Any], where: str) -> OAuthTokens:
    """
    The tokens of a ``claudeAiOauth`` object.

    :raises CredentialFileError: when it lacks them.
    """
    return tokens_from_document({"claudeAiOauth": oauth}, where)


def with_tokens(oauth: dict[str, Any], tokens: OAuthTokens) -> dict[str, Any]:
    """
    A copy of ``oauth`` holding ``tokens``, every other key kept.
    """
    return {
        **oauth,
        "accessToken": tokens.access_token,
        "refreshToken": tokens.refresh_token,
        "expiresAt": tokens.expires_at_ms,
    }


class TokenVault:
    """
    The hashes of the credentials' tokens in the Redis of ``store``,
    encrypted with ``fernet`` when given.
    """

    log = Logger()

    def __init__(self, store: RedisStore, fernet: Fernet | None = None) -> None:
        self.store = store
        self._fernet = fernet
        #: Where each new version is announced.
        self.channel = store.key("events", "credentials")

    def key(self, tag: str) -> str:
        """
        The hash of credential ``tag``.
        """
        return self.store.key("cred", tag)

    def fetch(self, tag: str) -> Deferred[TokenRecord | None]:
        """
        The newest version of ``tag``'s tokens, None when Redis has none;
        fails with :obj:`VaultError` when they cannot be read, or
        :obj:`ccm.state.redis.StateUnavailable`.
        """
        d = self.store.command("HGETALL", self.key(tag))
        return d.addCallback(self._record, tag)

    def offer(self, tag: str, oauth: dict[str, Any]) -> Deferred[int]:
        """
        Import ``oauth`` when it expires later than what Redis has (or
        Redis has nothing): fires with the new version, or 0.
        """
        expires = tokens_of(oauth, tag).expires_at_ms
        args = [self._encode(oauth), expires, self.store.process_id, tag, self.channel]
        return self.store.evaluate(_OFFER, [self.key(tag)], args).addCallback(int)

    def write(
        self, tag: str, oauth: dict[str, Any], fence_key: str, fence: int, base: int
    ) -> Deferred[int]:
        """
        Store refreshed tokens, refreshed from version ``base`` under fence
        ``fence`` of the lease whose counter is ``fence_key``: fires with
        the new version, or 0 when either moved on.
        """
        expires = tokens_of(oauth, tag).expires_at_ms
        args = [
            self._encode(oauth), expires, self.store.process_id, tag, self.channel, fence, base
        ]
        return self.store.evaluate(_WRITE, [self.key(tag), fence_key], args).addCallback(int)

    def _encode(self, oauth: dict[str, Any]) -> str:
        text = json.dumps(oauth, separators=(",", ":"))
        if self._fernet is None:
            return text
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def _record(self, reply: Any, tag: str) -> TokenRecord | None:
        fields = _pairs(reply)
        if "doc" not in fields:
            return None
        text = str(fields["doc"])
        if not text.startswith("{"):
            if self._fernet is None:
                raise VaultError(
                    f"the tokens of credential {tag} in the shared state are encrypted; "
                    "set state.encryption_key_file to the key the other processes use"
                )
            try:
                text = self._fernet.decrypt(text.encode("ascii")).decode("utf-8")
            except (InvalidToken, ValueError):
                raise VaultError(
                    f"the tokens of credential {tag} in the shared state cannot be "
                    "decrypted with state.encryption_key_file: a different key?"
                ) from None
        try:
            oauth = json.loads(text)
            if not isinstance(oauth, dict):
                raise ValueError("not an object")
            tokens_of(oauth, tag)
        except (ValueError, CredentialFileError):
            raise VaultError(
                f"the tokens of credential {tag} in the shared state are not a usable "
                "claudeAiOauth object"
            ) from None
        return TokenRecord(int(fields.get("version", 0)), oauth)


def _pairs(reply: Any) -> dict[str, Any]:
    """
    HGETALL's reply as a dict (txredisapi gives a dict or a flat list).
    """
    if isinstance(reply, dict):
        return reply
    items = list(reply or [])
    return dict(zip(items[0::2], items[1::2]))

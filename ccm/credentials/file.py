# -*- test-case-name: tests.credentials.test_file -*-
"""
The Claude Code credentials file: where it is, what it holds, and how to
write refreshed tokens back without losing anything.

The file is Claude Code's own (``~/.claude/.credentials.json``); other
programs, Claude Code first of all, may rewrite it at any time.  ccm
therefore re-reads it before changing it, keeps every key it does not know,
keeps the file's mode, and replaces it atomically.  A file ccm cannot parse
is never overwritten.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, cast

from twisted.internet.defer import Deferred, succeed

from ccm.files import JSONFileError, read_json_file, replace_file

CREDENTIALS_FILE_NAME = ".credentials.json"


class CredentialFileError(Exception):
    """
    The credentials file cannot be used; the message says why and names the
    file, never its contents.
    """


@dataclass(frozen=True)
class OAuthTokens:
    """
    The OAuth state of one subscription, as stored under ``claudeAiOauth``.
    """

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at_ms: int
    subscription_type: str = ""
    rate_limit_tier: str = ""

    def expires_within(self, now_seconds: float, margin_seconds: float) -> bool:
        """
        Whether the access token expires less than ``margin_seconds`` from
        ``now_seconds``; a zero expiry means it never expires.
        """
        if self.expires_at_ms == 0:
            return False
        return now_seconds * 1000 >= self.expires_at_ms - margin_seconds * 1000

    def seconds_left(self, now_seconds: float) -> float | None:
        """
        The seconds the access token stays valid after ``now_seconds`` (0
        once expired), or None when it never expires.
        """
        if self.expires_at_ms == 0:
            return None
        return max(0.0, self.expires_at_ms / 1000 - now_seconds)

    def refreshed(
        self, access_token: str, refresh_token: str, expires_at_ms: int
    ) -> OAuthTokens:
        """
        These tokens after a refresh; an empty ``refresh_token`` keeps the
        current one, as the OAuth server may not rotate it.
        """
        return replace(
            self,
            access_token=access_token,
            refresh_token=refresh_token or self.refresh_token,
            expires_at_ms=expires_at_ms,
        )


def default_credential_path(environ: Mapping[str, str], home: str) -> str:
    """
    Where Claude Code keeps its credentials: ``$CLAUDE_CONFIG_DIR`` when set,
    else ``~/.claude``.
    """
    config_dir = environ.get("CLAUDE_CONFIG_DIR", "")
    if config_dir:
        return os.path.join(config_dir, CREDENTIALS_FILE_NAME)
    return os.path.join(home, ".claude", CREDENTIALS_FILE_NAME)


def tokens_from_document(document: object, path: str) -> OAuthTokens:
    """
    The tokens of a credentials document in Claude Code's format (its
    ``claudeAiOauth`` object), wherever it was read from: a file, the
    keychain, or the shared state.

    :param path: where it came from, named in errors.
    :raises CredentialFileError: when it holds no usable tokens.
    """
    if not isinstance(document, dict):
        raise CredentialFileError(f"credential file {path} does not hold a JSON object")
    oauth = document.get("claudeAiOauth")
    if not isinstance(oauth, dict):
        raise CredentialFileError(
            f"credential file {path} has no claudeAiOauth object; log in with "
            "`claude /login` on this machine"
        )
    access = oauth.get("accessToken")
    if not isinstance(access, str) or not access:
        raise CredentialFileError(f"credential file {path} has no claudeAiOauth.accessToken")
    refresh = oauth.get("refreshToken", "")
    expires = oauth.get("expiresAt", 0)
    if not isinstance(refresh, str):
        raise CredentialFileError(f"credential file {path}: claudeAiOauth.refreshToken is not a string")
    if isinstance(expires, bool) or not isinstance(expires, (int, float)):
        raise CredentialFileError(f"credential file {path}: claudeAiOauth.expiresAt is not a number")
    subscription = oauth.get("subscriptionType")
    tier = oauth.get("rateLimitTier")
    return OAuthTokens(
        access_token=access,
        refresh_token=refresh,
        expires_at_ms=int(expires),
        subscription_type=subscription if isinstance(subscription, str) else "",
        rate_limit_tier=tier if isinstance(tier, str) else "",
    )


class CredentialFile:
    """
    One credentials file on disk.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def _read_document(self) -> tuple[dict[str, Any], OAuthTokens]:
        try:
            document = read_json_file(self.path)
        except JSONFileError as error:
            if isinstance(error.os_error, FileNotFoundError):
                message = (
                    f"credential file {self.path} does not exist; log in with "
                    "`claude /login` on this machine or copy the file there"
                )
            elif error.os_error is not None:
                message = f"cannot read credential file {self.path}: {error.os_error.strerror}"
            else:
                message = f"credential file {self.path} {error.reason}"
            raise CredentialFileError(message) from None
        tokens = tokens_from_document(document, self.path)
        # tokens_from_document refuses anything but an object.
        return cast(dict[str, Any], document), tokens

    def read(self) -> OAuthTokens:
        """
        Read the tokens.

        :raises CredentialFileError: when the file is missing, unreadable or
            malformed.
        """
        return self._read_document()[1]

    def read_oauth(self) -> dict[str, Any]:
        """
        The whole ``claudeAiOauth`` object, keys ccm does not know included
        (what the shared state keeps of a credential).

        :raises CredentialFileError: as :obj:`read`.
        """
        return cast(dict[str, Any], self._read_document()[0]["claudeAiOauth"])

    def catch_up(self) -> Deferred[None]:
        """
        Nothing to do: :obj:`read` reads the file itself every time.
        """
        return succeed(None)

    def check_writable(self) -> None:
        """
        Make sure refreshed tokens could be saved: a refresh rotates the
        refresh token, so one that cannot be saved would log the
        subscription out at the next restart.

        :raises CredentialFileError: when the file or its directory is not
            writable.
        """
        target = self._target()
        directory = os.path.dirname(target)
        if not os.access(target, os.W_OK) or not os.access(directory, os.W_OK):
            raise CredentialFileError(
                f"credential file {self.path} is not writable, so ccm refuses to "
                "refresh its token (the new refresh token could not be saved); "
                "make the file and its directory writable by ccm"
            )

    def write_tokens(self, tokens: OAuthTokens) -> None:
        """
        Store refreshed tokens: re-read the file, replace the three token
        fields, keep every other key and the file mode, and swap the new
        file in atomically.

        :raises CredentialFileError: when the current file cannot be parsed
            (it is left alone) or the new one cannot be written.
        """
        document, _ = self._read_document()
        oauth = document["claudeAiOauth"]
        oauth["accessToken"] = tokens.access_token
        oauth["refreshToken"] = tokens.refresh_token
        oauth["expiresAt"] = tokens.expires_at_ms
        target = self._target()
        try:
            replace_file(target, json.dumps(document).encode("utf-8"))
        except OSError as error:
            raise CredentialFileError(f"cannot write {target}: {error.strerror}") from None

    def _target(self) -> str:
        # Write through a symbolic link instead of replacing the link with
        # a file, which would leave the linked-to file with the old,
        # rotated-away refresh token.
        return os.path.realpath(self.path)



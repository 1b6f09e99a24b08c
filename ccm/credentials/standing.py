# -*- test-case-name: tests.credentials.test_standing -*-
"""
A subscription's standing with Anthropic, beyond its tokens: a login that
Anthropic rejects (:obj:`LoginRejection`) and a ban (:obj:`Quarantine`),
kept for each credential by its :obj:`Standing`.  Both end only when new
tokens appear, so both say how to bring them (:obj:`login_advice`).

**A new login**, which ends a quarantine, is a store holding a login (its
refresh token, or its access token when it has none) that is neither the
one the credential held when it was quarantined nor the one it holds now.
ccm never refreshes a quarantined credential, and its own refresh would
give it the tokens it then stores, so the login came from somewhere else:
``claude /login``, or a copied file.  (Claude Code refreshing the banned
login on the ccm host counts too; if the ban still holds, the next answer
quarantines the credential again.)
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet.interfaces import IReactorTime

from ccm.credentials.file import CREDENTIALS_FILE_NAME, OAuthTokens
from ccm.pool.statelog import CredentialStateLog


@dataclass(frozen=True)
class LoginRejection:
    """
    Anthropic rejected ``access_token``, and neither the store nor a
    refresh brought another: the credential cannot serve while it holds
    that token.

    :ivar problem: what happened and what to do, for errors and the log.
    """

    access_token: str = field(repr=False)
    problem: str


@dataclass(frozen=True)
class Quarantine:
    """
    A ban: the credential takes no requests from ``since`` (Unix seconds)
    until a new login appears in its store.

    :ivar cause: why, and what ends it, for errors and the log.
    :ivar login: the banned login (see :obj:`login_of`).
    """

    cause: str
    since: float
    login: str = field(repr=False)


def login_of(tokens: OAuthTokens) -> str:
    """
    What identifies a login: its refresh token, or its access token when it
    has none (a ``claude setup-token`` token).
    """
    return tokens.refresh_token or tokens.access_token


def is_new_login(quarantine: Quarantine, stored: OAuthTokens, held: OAuthTokens | None) -> bool:
    """
    Whether ``stored``, just read from the store, is a new login for a
    credential quarantined with ``quarantine`` that holds ``held``.
    """
    login = login_of(stored)
    return login != quarantine.login and (held is None or login != login_of(held))


def login_advice(store_path: str) -> str:
    """
    What to run so that a new login lands in ``store_path``: Claude Code
    writes ``.credentials.json`` in ``$CLAUDE_CONFIG_DIR`` (``~/.claude``
    when unset), so naming the directory makes the command exact for any
    file of that name; a keychain item (not a path) is written by
    ``claude /login`` on the Mac itself.
    """
    directory, name = os.path.split(store_path)
    if not os.path.isabs(store_path):
        return "run `claude /login` on the ccm host, as the user ccm runs as"
    if name == CREDENTIALS_FILE_NAME:
        command = f"CLAUDE_CONFIG_DIR={shlex.quote(directory)} claude /login"
        return f"run `{command}` on the ccm host, as the user ccm runs as"
    return (
        f"run `claude /login` on the ccm host and copy the {CREDENTIALS_FILE_NAME} "
        f"it writes to {store_path}"
    )


class Standing:
    """
    One credential's standing: whether Anthropic rejects its login or banned
    it, and since when.  Each change is logged once, by the credential's
    state log.

    :param tokens: the tokens the credential holds now.
    :param store_path: where its store is, for the advice.
    """

    def __init__(
        self,
        clock: IReactorTime,
        state_log: CredentialStateLog,
        *,
        tokens: Callable[[], OAuthTokens | None],
        store_path: Callable[[], str],
    ) -> None:
        self._clock = clock
        self._state_log = state_log
        self._tokens = tokens
        self._store_path = store_path
        self.quarantine: Quarantine | None = None
        self._rejection: LoginRejection | None = None

    @property
    def login_problem(self) -> str | None:
        """
        Why the credential cannot serve with the tokens it holds, when
        Anthropic rejected them; None otherwise.
        """
        tokens, rejection = self._tokens(), self._rejection
        if tokens is None or rejection is None or tokens.access_token != rejection.access_token:
            return None
        return rejection.problem

    @property
    def waits_for_login(self) -> bool:
        """
        Whether only new tokens in the store can make the credential serve.
        """
        return self.quarantine is not None or self.login_problem is not None

    def reject_login(self, access_token: str, answer: str) -> None:
        """
        Nothing brought a token that Anthropic accepts instead of
        ``access_token``, which it rejected with ``answer``: serve nothing
        while holding it.  Logged once per token, however many requests
        found it so; nothing happens when the credential holds another
        token by now.
        """
        tokens = self._tokens()
        if tokens is None or tokens.access_token != access_token or self.login_problem:
            return
        path = self._store_path()
        problem = (
            f"Anthropic rejects the subscription's login ({answer}), and neither {path} "
            f"nor a token refresh brought a token it accepts; {login_advice(path)}"
        )
        self._rejection = LoginRejection(access_token, problem)
        self._state_log.login_rejected(problem)

    def enter_quarantine(self, reason: str) -> None:
        """
        Quarantine the credential because of ``reason`` (a ban), from now
        until a new login appears in its store; a credential already in
        quarantine stays in the one it is in.
        """
        if self.quarantine is not None:
            return
        tokens, path = self._tokens(), self._store_path()
        cause = (
            f"{reason}; it serves again once a new login appears in {path}: {login_advice(path)}"
        )
        now = self._clock.seconds()
        self.quarantine = Quarantine(cause, now, login_of(tokens) if tokens is not None else "")
        self._state_log.quarantined(cause, now)

    def stored(self, tokens: OAuthTokens) -> None:
        """
        The store was read and holds ``tokens``, which the credential is
        about to take: a new login there ends a quarantine.
        """
        quarantine = self.quarantine
        if quarantine is not None and is_new_login(quarantine, tokens, self._tokens()):
            self.quarantine = None
            self._state_log.quarantine_ended(self._store_path())

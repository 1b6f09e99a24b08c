# -*- test-case-name: tests.pool.test_statelog -*-
"""
The one place where the changes of a credential's state are logged: its
file loaded or lost, its token refreshed, rejected or recovered, whether it
can serve (paused, rate-limited, quarantined, usable again), its plan, and
whether its usage polls work.

The credential, its pool member and the usage poller tell a
:obj:`CredentialStateLog` what happened; it decides whether that is news and
says it in the words docs/running.md documents.  Each line carries its
figures as fields of their own, numbers as numbers, beside the words.
The outcome of each refresh and each usage poll is also told to its
:obj:`CredentialEvents` (the metrics).
"""

from __future__ import annotations

from typing import Protocol

from twisted.logger import Logger

from ccm.pool.serving import MemberState, Unusable
from ccm.units import format_duration


def _validity(expires_in: float | None) -> str:
    """
    How long a token is valid, in words: ``ever``, or a short duration.
    """
    return "ever" if expires_in is None else format_duration(expires_in)


#: The outcomes of a token refresh, and of a usage poll.
REFRESHED, ADOPTED, REFRESH_FAILED = "refreshed", "adopted", "failed"
POLLED, POLL_FAILED, POLL_RATE_LIMITED = "ok", "failed", "rate_limited"


class CredentialEvents(Protocol):
    """
    Told the outcome of each refresh and usage poll of a credential.
    """

    def refresh(self, tag: str, outcome: str) -> None:
        """
        A refresh of ``tag``'s token ended: :obj:`REFRESHED`, :obj:`ADOPTED`
        (another program's tokens taken instead) or :obj:`REFRESH_FAILED`.
        """

    def poll(self, tag: str, outcome: str) -> None:
        """
        A usage poll of ``tag`` ended: :obj:`POLLED`, :obj:`POLL_FAILED` or
        :obj:`POLL_RATE_LIMITED`.
        """


class _NoEvents:
    def refresh(self, tag: str, outcome: str) -> None:
        pass

    def poll(self, tag: str, outcome: str) -> None:
        pass


class CredentialStateLog:
    """
    The log of one credential's state changes.

    It remembers the last serving state it reported, so that each change is
    logged once, whichever part of ccm noticed it first (the file watcher,
    or a request finding the credential paused).

    :param tag: the credential's tag.
    :param events: told each refresh's and poll's outcome.
    """

    log = Logger()

    def __init__(self, tag: str, events: CredentialEvents | None = None) -> None:
        self.tag = tag
        self._events: CredentialEvents = events if events is not None else _NoEvents()
        self._reported: MemberState | None = None

    def available(self, plan: str, expires_in: float | None) -> None:
        """
        The credential has tokens again, valid for ``expires_in`` seconds
        (None: a token that never expires).
        """
        # This line says it can serve: a request finding it so is no news.
        self._reported = MemberState()
        self.log.info(
            "credential {tag} is available ({plan}, token valid for {remaining})",
            tag=self.tag,
            plan=plan,
            remaining=_validity(expires_in),
            expires_in_seconds=expires_in,
        )

    def loaded_expired(self, plan: str) -> None:
        """
        The credential has tokens again, but its access token has expired.
        """
        self._reported = MemberState()
        self.log.info(
            "credential {tag} is loaded ({plan}); its token has expired and will be refreshed",
            tag=self.tag,
            plan=plan,
        )

    def unavailable(self, problem: str) -> None:
        """
        The credential cannot serve because of ``problem`` (its file is
        missing or broken, for example).
        """
        self.serving(MemberState(Unusable.UNAVAILABLE, problem=problem))

    def serving(self, state: MemberState) -> None:
        """
        The credential was found in ``state``: a warning when it stops being
        usable, with the reason, or starts serving from paid extra usage, and
        a note when it is usable (or back on its plan) again.
        """
        before = self._reported
        if state == before:
            return
        self._reported = state
        if state.reason is None:
            if state.extra_usage:
                self.log.warn("credential {tag} is {state}", tag=self.tag, state=state.description)
            elif before is not None and before.reason is None:
                self.log.info("credential {tag} serves from its plan again", tag=self.tag)
            elif before is not None:
                self.log.info("credential {tag} is usable again", tag=self.tag)
            return
        self.log.warn(
            "credential {tag} is {state}",
            tag=self.tag,
            state=state.description,
            reason=state.reason.name,
            until=state.until,
            utilization=state.utilization,
            cap=state.cap,
            since=state.since,
        )

    def refreshing(self) -> None:
        """
        A refresh of the access token begins.
        """
        self.log.info("credential {tag}: refreshing the OAuth access token", tag=self.tag)

    def refreshed(self, expires_in: float | None) -> None:
        """
        A refresh worked; the new token is valid for ``expires_in`` seconds
        (None: it never expires).
        """
        self._events.refresh(self.tag, REFRESHED)
        self.log.info(
            "credential {tag}: token refreshed, valid for {remaining}",
            tag=self.tag,
            remaining=_validity(expires_in),
            expires_in_seconds=expires_in,
        )

    def adopted(self) -> None:
        """
        Before refreshing, fresh tokens were found in the store.
        """
        self._events.refresh(self.tag, ADOPTED)
        self.log.info(
            "credential {tag}: adopted tokens refreshed by another program", tag=self.tag
        )

    def refresh_failed(self, problem: str) -> None:
        """
        A refresh failed, or was refused, because of ``problem``.
        """
        self._events.refresh(self.tag, REFRESH_FAILED)
        self.log.error("credential {tag}: {problem}", tag=self.tag, problem=problem)

    def not_saved(self, error: str) -> None:
        """
        A refresh worked, but the store did not take the new tokens.
        """
        self.log.error(
            "credential {tag}: refreshed tokens could not be saved: {error}",
            tag=self.tag,
            error=error,
        )

    def plan_learned(self, subscription_type: str, rate_limit_tier: str, weight: float) -> None:
        """
        The OAuth profile told the plan; the credential weighs ``weight``.
        """
        self.log.info(
            "credential {tag}: plan {plan} ({tier}), weight {weight:g}",
            tag=self.tag,
            plan=subscription_type or "unknown",
            tier=rate_limit_tier or "unknown tier",
            weight=weight,
        )

    def poll_failed(self, reason: str, failures: int, delay: float) -> None:
        """
        A usage poll failed, number ``failures`` in a row; the next one is in
        ``delay`` seconds.  Only the first of a row is a warning.
        """
        self._events.poll(self.tag, POLL_FAILED)
        if failures == 1:
            self.log.warn(
                "usage poll of {tag} failed ({reason}); keeping its last known state, "
                "next try in {delay}",
                tag=self.tag,
                reason=reason,
                delay=format_duration(delay),
                delay_seconds=delay,
            )
        else:
            self.log.debug(
                "usage poll of {tag} failed again ({reason}, {failures} in a row); "
                "next try in {delay}",
                tag=self.tag,
                reason=reason,
                failures=failures,
                delay=format_duration(delay),
                delay_seconds=delay,
            )

    def polled(self) -> None:
        """
        A usage poll worked (logged by the poller, at debug level).
        """
        self._events.poll(self.tag, POLLED)

    def poll_works_again(self, failures: int) -> None:
        """
        A usage poll worked after ``failures`` failed ones.
        """
        self.log.info(
            "usage poll of {tag} works again after {failures} failed",
            tag=self.tag,
            failures=failures,
        )

    def poll_rate_limited(self, delay: float) -> None:
        """
        The usage endpoint answered 429; the next poll is in ``delay``
        seconds.
        """
        self._events.poll(self.tag, POLL_RATE_LIMITED)
        self.log.debug(
            "usage endpoint rate-limited the poll of {tag}; next poll in {delay}",
            tag=self.tag,
            delay=format_duration(delay),
            delay_seconds=delay,
        )

    def token_rejected(self, answer: str) -> None:
        """
        The upstream rejected the access token with ``answer`` (see
        :obj:`ccm.upstream.verdicts.Reading.describe`); the credential looks
        for a working one.  Once per recovery, not per request.
        """
        self.log.info(
            "credential {tag}: Anthropic rejected its access token ({answer}); looking for a "
            "working one in its store, then with a refresh",
            tag=self.tag,
            answer=answer,
        )

    def recovered(self, source: str) -> None:
        """
        After a rejected token, the credential found one to try, from
        ``source`` (``its store`` or ``a refresh``).
        """
        self.log.info(
            "credential {tag}: retrying with the access token from {source}",
            tag=self.tag,
            source=source,
        )

    def login_rejected(self, problem: str) -> None:
        """
        Nothing brought a token the upstream accepts: the credential serves
        nothing until its store holds a new login.  The one loud line of the
        incident; a pool finding it so later is no news.
        """
        self._reported = MemberState(Unusable.UNAVAILABLE, problem=problem)
        self.log.error(
            "credential {tag} needs a new login: {problem}", tag=self.tag, problem=problem
        )

    def quarantined(self, cause: str, since: float) -> None:
        """
        The credential was banned at ``since`` (Unix seconds) because of
        ``cause`` (which says what ends it); a pool finding it so later is
        no news.
        """
        self._reported = MemberState(Unusable.QUARANTINED, problem=cause, since=since)
        self.log.error(
            "credential {tag} is quarantined: {cause}; it takes no new requests and its "
            "sessions move to the other credentials of their pools",
            tag=self.tag,
            cause=cause,
            since=since,
        )

    def quarantine_ended(self, path: str) -> None:
        """
        A new login appeared in the credential's store, ``path``: its
        quarantine is over.
        """
        # Whatever state it is found in next is news.
        self._reported = None
        self.log.info(
            "credential {tag} leaves quarantine: {path} holds a new login", tag=self.tag, path=path
        )

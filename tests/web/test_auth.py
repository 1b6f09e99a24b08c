"""
Tests for :obj:`ccm.web.auth`: who a request comes from, by its bearer token or a
user token sent as an API key, compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ccm.web import auth
from ccm.web.auth import ANONYMOUS, Authenticator, Caller
from ccm.config.model import UserConfig
from ccm.web.errors import APIError

ALICE = UserConfig(name="alice", token="tok-alice-5b0e1c7d")
BOB = UserConfig(name="bob", token="tok-bob-93aa04f2")
CAROL = UserConfig(name="carol", token="tok-carol-1e6d2b88")
FOREIGN_KEY = "sk-ant-api03-someone-elses-key"


def headers(**values: str | list[str]) -> Headers:
    """
    Request headers; underscores in names become dashes.
    """
    return Headers(
        {
            name.replace("_", "-").encode("ascii"): [
                v.encode("latin-1") for v in (value if isinstance(value, list) else [value])
            ]
            for name, value in values.items()
        }
    )


class AuthenticateTests(SynchronousTestCase):
    """
    :obj:`Authenticator.authenticate` with users configured.
    """

    def setUp(self) -> None:
        self.authenticator = Authenticator([ALICE, BOB, CAROL])

    def refused(self, request_headers: Headers, *secrets: str) -> APIError:
        """
        Check that ``request_headers`` are refused with a 401
        ``authentication_error`` that tells the client not to retry, sends
        the user to the ccm operator rather than to ``/login``, and mentions
        none of ``secrets``; and that a valid request is still accepted
        afterwards.
        """
        error: APIError = self.assertRaises(APIError, self.authenticator.authenticate, request_headers)
        self.assertEqual(error.status, 401)
        self.assertEqual(error.error_type, "authentication_error")
        self.assertEqual(error.headers, (("x-should-retry", "false"),))
        self.assertIn("ask your ccm operator for a valid ccm token", error.message)
        self.assertIn("/login does not help", error.message)
        for secret in secrets:
            self.assertNotIn(secret, error.message)
            self.assertNotIn(secret, str(error))
        caller = self.authenticator.authenticate(headers(authorization=f"Bearer {CAROL.token}"))
        self.assertEqual(caller.user, CAROL)
        return error

    def test_bearer(self) -> None:
        """
        ``Authorization: Bearer <token>`` identifies the user with that
        token.
        """
        caller = self.authenticator.authenticate(headers(authorization=f"Bearer {BOB.token}"))
        self.assertEqual(caller, Caller(user=BOB))
        self.assertEqual(caller.name, "bob")

    def test_scheme_case_insensitive(self) -> None:
        """
        The scheme may be written in any case, and surrounding blanks are
        ignored.
        """
        for value in (
            f"bearer {ALICE.token}",
            f"BEARER {ALICE.token}",
            f"  Bearer  {ALICE.token} ",
        ):
            caller = self.authenticator.authenticate(headers(authorization=value))
            self.assertEqual(caller.user, ALICE, value)

    def test_x_api_key_with_user_token(self) -> None:
        """
        An ``x-api-key`` (or ``api-key``) equal to a user's token identifies
        that user, so ``ANTHROPIC_API_KEY`` clients work.
        """
        authenticate = self.authenticator.authenticate
        self.assertEqual(authenticate(headers(x_api_key=CAROL.token)).user, CAROL)
        self.assertEqual(authenticate(headers(api_key=BOB.token)).user, BOB)

    def test_bearer_and_same_users_key(self) -> None:
        """
        A bearer token and an API key of the same user are accepted
        together.
        """
        caller = self.authenticator.authenticate(
            headers(authorization=f"Bearer {ALICE.token}", x_api_key=ALICE.token)
        )
        self.assertEqual(caller.user, ALICE)

    def test_tokens_of_two_users(self) -> None:
        """
        A bearer token and an API key of different users, or two API keys
        of different users, are refused as ambiguous.
        """
        for request_headers in (
            headers(authorization=f"Bearer {ALICE.token}", x_api_key=BOB.token),
            headers(authorization=f"Bearer {ALICE.token}", api_key=BOB.token),
            headers(x_api_key=ALICE.token, api_key=BOB.token),
            headers(x_api_key=[ALICE.token, BOB.token]),
        ):
            error = self.refused(request_headers, ALICE.token, BOB.token)
            self.assertIn("ambiguous ccm credentials", error.message)
            self.assertIn("different ccm users", error.message)

    def test_foreign_api_key_refused(self) -> None:
        """
        An API key that is no user's token is refused, alone or next to a
        valid bearer token, and the message does not repeat it.
        """
        self.refused(headers(x_api_key=FOREIGN_KEY), FOREIGN_KEY)
        self.refused(headers(api_key=FOREIGN_KEY), FOREIGN_KEY)
        for request_headers in (
            headers(authorization=f"Bearer {ALICE.token}", x_api_key=FOREIGN_KEY),
            headers(x_api_key=ALICE.token, api_key=FOREIGN_KEY),
        ):
            error = self.refused(request_headers, FOREIGN_KEY, ALICE.token)
            self.assertIn("API keys are not accepted", error.message)

    def test_missing_token(self) -> None:
        """
        Without any token the caller is told how to give one.
        """
        for request_headers in (headers(), headers(x_api_key="  ")):
            error = self.refused(request_headers)
            self.assertTrue(
                error.message.startswith(
                    "missing ccm token: set ANTHROPIC_AUTH_TOKEN to the token your ccm "
                    "operator gave you; "
                ),
                error.message,
            )

    def test_wrong_token(self) -> None:
        """
        An unknown bearer token, or an empty one, is refused without being
        repeated; the message says that the ccm token was not recognised
        and which header and client setting carried it.
        """
        near_miss = ALICE.token[:-1]
        for value in (f"Bearer {near_miss}", "Bearer", "Bearer "):
            error = self.refused(headers(authorization=value), near_miss)
            self.assertTrue(
                error.message.startswith(
                    "ccm token not recognised (sent in the Authorization header, "
                    "from ANTHROPIC_AUTH_TOKEN): check it for typos; "
                ),
                error.message,
            )

    def test_wrong_api_key_token(self) -> None:
        """
        A lone API key that is no user's token is reported as a ccm token
        that was not recognised, naming the header it came in.
        """
        error = self.refused(headers(x_api_key=FOREIGN_KEY), FOREIGN_KEY)
        self.assertIn("(sent in the x-api-key header, from ANTHROPIC_API_KEY)", error.message)
        error = self.refused(headers(api_key=FOREIGN_KEY), FOREIGN_KEY)
        self.assertIn("(sent in the api-key header)", error.message)

    def test_token_is_not_a_prefix_match(self) -> None:
        """
        A token with extra characters is not the user's token.
        """
        self.refused(headers(authorization=f"Bearer {ALICE.token}x"))
        self.refused(headers(authorization=f"Bearer {ALICE.token} {BOB.token}"))

    def test_other_schemes_refused(self) -> None:
        """
        ``Basic`` and other schemes are refused, even when they carry a
        user's token.
        """
        for value in (f"Basic {ALICE.token}", f"Token {ALICE.token}", ALICE.token):
            error = self.refused(headers(authorization=value), ALICE.token)
            self.assertIn("unsupported Authorization scheme", error.message)

    def test_two_authorization_headers(self) -> None:
        """
        Two ``Authorization`` headers are refused as ambiguous, whichever
        users' tokens they hold, even the same one twice.
        """
        for values in (
            [f"Bearer {BOB.token}", "Bearer nonsense"],
            ["Bearer nonsense", f"Bearer {BOB.token}"],
            [f"Bearer {BOB.token}", f"Bearer {ALICE.token}"],
            [f"Bearer {BOB.token}", f"Bearer {BOB.token}"],
        ):
            error = self.refused(headers(authorization=values), BOB.token, ALICE.token)
            self.assertIn("more than one Authorization header", error.message)

    def test_not_anonymous(self) -> None:
        """
        With users configured the authenticator is not anonymous.
        """
        self.assertFalse(self.authenticator.anonymous)


class ConstantTimeTests(SynchronousTestCase):
    """
    Tokens are compared with :obj:`hmac.compare_digest`, against every user.
    """

    def setUp(self) -> None:
        self.comparisons: list[tuple[Any, Any]] = []
        compare = hmac.compare_digest

        def recording_compare(a: Any, b: Any) -> bool:
            self.comparisons.append((a, b))
            return compare(a, b)

        self.patch(auth.hmac, "compare_digest", recording_compare)
        self.authenticator = Authenticator([ALICE, BOB, CAROL])

    def test_every_user_compared(self) -> None:
        """
        A match on the first user still compares the token with all of
        them, so timing reveals nothing about which user matched.
        """
        self.authenticator.authenticate(headers(authorization=f"Bearer {ALICE.token}"))
        self.assertEqual(len(self.comparisons), 3)
        self.comparisons.clear()
        self.assertRaises(
            APIError, self.authenticator.authenticate, headers(authorization="Bearer x")
        )
        self.assertEqual(len(self.comparisons), 3)

    def test_digests_of_equal_length_compared(self) -> None:
        """
        What is compared are fixed-length digests, not the raw tokens, so
        the comparison does not leak the token length either.
        """
        self.authenticator.authenticate(headers(authorization=f"Bearer {BOB.token}"))
        for presented, stored in self.comparisons:
            self.assertEqual((len(presented), len(stored)), (32, 32))
            self.assertNotIn(BOB.token.encode("ascii"), (presented, stored))


class AnonymousTests(SynchronousTestCase):
    """
    :obj:`Authenticator.authenticate` with no users configured.
    """

    def setUp(self) -> None:
        self.authenticator = Authenticator([])

    def test_anonymous(self) -> None:
        """
        Without users the authenticator is anonymous.
        """
        self.assertTrue(self.authenticator.anonymous)

    def test_no_token_needed(self) -> None:
        """
        A request without a token is served as the anonymous caller.
        """
        caller = self.authenticator.authenticate(headers())
        self.assertIs(caller, ANONYMOUS)
        self.assertIsNone(caller.user)
        self.assertEqual(caller.name, "")
        self.assertFalse(caller.admin)

    def test_any_authorization_accepted(self) -> None:
        """
        Whatever ``Authorization`` a client sends (it is never forwarded),
        it is served anonymously.
        """
        for value in ("Bearer whatever", "Basic dXNlcjpwYXNz", "garbage", ["Bearer a", "Bearer b"]):
            self.assertIs(self.authenticator.authenticate(headers(authorization=value)), ANONYMOUS)

    def test_api_key_refused(self) -> None:
        """
        An API key is refused even without users, so nobody believes it
        is used.
        """
        for request_headers in (headers(x_api_key=FOREIGN_KEY), headers(api_key=FOREIGN_KEY)):
            error = self.assertRaises(APIError, self.authenticator.authenticate, request_headers)
            self.assertEqual((error.status, error.error_type), (401, "authentication_error"))
            self.assertEqual(error.headers, (("x-should-retry", "false"),))
            self.assertNotIn(FOREIGN_KEY, error.message)


class AdminTests(SynchronousTestCase):
    """
    :obj:`Caller.admin`: only users configured with ``"admin": true`` are
    admins.
    """

    def test_admin_flag(self) -> None:
        """
        A caller is an admin exactly when its user is one; the anonymous
        caller never is.
        """
        self.assertTrue(Caller(UserConfig("alice", "tok-a", admin=True)).admin)
        self.assertFalse(Caller(UserConfig("bob", "tok-b")).admin)
        self.assertFalse(ANONYMOUS.admin)

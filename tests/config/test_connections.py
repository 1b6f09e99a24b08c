"""
Tests for :obj:`ccm.config.connections`: a service's connection bounds.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ccm.config.model import ConnectionLimits
from tests.config.parsing import ProblemsTestMixin, problems_of, service_of


class ConnectionLimitsTests(SynchronousTestCase, ProblemsTestMixin):
    """
    The connection bounds (``request_head_timeout``, ``request_body_min_rate``,
    ``request_body_grace``, ``keep_alive_timeout``, ``max_connections``,
    ``max_connections_per_address``, ``max_request_head``) are read into one
    :obj:`ConnectionLimits`, each with its default and its checks.
    """

    def test_defaults(self) -> None:
        """
        Without any of the keys the service has the documented defaults.
        """
        self.assertEqual(
            service_of({}).connection_limits,
            ConnectionLimits(
                request_head_timeout=30.0,
                request_body_min_rate=1024,
                request_body_grace=30.0,
                keep_alive_timeout=60.0,
                max_connections=1024,
                max_connections_per_address=256,
                max_request_head=32 * 1024,
            ),
        )
        self.assertEqual(ConnectionLimits(), service_of({}).connection_limits)

    def test_values(self) -> None:
        """
        Every key is read: durations in seconds, sizes in bytes, counts as
        they are.
        """
        limits = service_of(
            {
                "request_head_timeout": "10s",
                "request_body_min_rate": "4KiB",
                "request_body_grace": "1m",
                "keep_alive_timeout": "2m30s",
                "max_connections": 100,
                "max_connections_per_address": 10,
                "max_request_head": "64KiB",
            }
        ).connection_limits
        self.assertEqual(
            limits,
            ConnectionLimits(
                request_head_timeout=10.0,
                request_body_min_rate=4096,
                request_body_grace=60.0,
                keep_alive_timeout=150.0,
                max_connections=100,
                max_connections_per_address=10,
                max_request_head=65536,
            ),
        )

    def test_sizes_as_numbers(self) -> None:
        """
        The two sizes also take a plain byte count.
        """
        limits = service_of(
            {"request_body_min_rate": 500, "max_request_head": 2048}
        ).connection_limits
        self.assertEqual((limits.request_body_min_rate, limits.max_request_head), (500, 2048))

    def test_zero_turns_off(self) -> None:
        """
        Zero is accepted where it turns a bound off: the head deadline, the
        body rate and grace, and both caps.
        """
        limits = service_of(
            {
                "request_head_timeout": "0s",
                "request_body_min_rate": 0,
                "request_body_grace": "0s",
                "max_connections": 0,
                "max_connections_per_address": 0,
            }
        ).connection_limits
        self.assertEqual(
            (
                limits.request_head_timeout,
                limits.request_body_min_rate,
                limits.request_body_grace,
                limits.max_connections,
                limits.max_connections_per_address,
            ),
            (0.0, 0, 0.0, 0, 0),
        )

    def test_per_address_without_total(self) -> None:
        """
        With no total cap, any per-address cap is accepted.
        """
        limits = service_of(
            {"max_connections": 0, "max_connections_per_address": 5000}
        ).connection_limits
        self.assertEqual(limits.max_connections_per_address, 5000)

    def test_bad_durations(self) -> None:
        """
        Negative durations, numbers and words are refused, naming the key;
        the keep-alive bound cannot be zero.
        """
        for key in ("request_head_timeout", "request_body_grace", "keep_alive_timeout"):
            self.assert_problem(
                {key: 30}, f"config.json: {key}: must be a string, got a number"
            )
            [line] = problems_of({key: "soon"})
            self.assertTrue(line.startswith(f"config.json: {key}: invalid duration 'soon'"), line)
        for key in ("request_head_timeout", "request_body_grace"):
            self.assert_problem(
                {key: "-1s"}, f"config.json: {key}: must be zero or positive, got '-1s'"
            )
        self.assert_problem(
            {"keep_alive_timeout": "0s"},
            "config.json: keep_alive_timeout: must be positive, got '0s'",
        )

    def test_bad_sizes(self) -> None:
        """
        The sizes refuse fractions, booleans, words and negative numbers;
        ``max_request_head`` must be at least 1 KiB.
        """
        self.assert_problem(
            {"request_body_min_rate": 1.5},
            'config.json: request_body_min_rate: must be a whole number of bytes per second '
            'or a size such as "1KiB", got 1.5',
        )
        self.assert_problem(
            {"request_body_min_rate": -1},
            "config.json: request_body_min_rate: must not be negative, got -1",
        )
        self.assert_problem(
            {"max_request_head": True},
            'config.json: max_request_head: must be a whole number of bytes or a size such as '
            '"32KiB", got a boolean',
        )
        self.assert_problem(
            {"max_request_head": "512"},
            "config.json: max_request_head: must be at least 1024 bytes, got 512",
        )
        [line] = problems_of({"max_request_head": "big"})
        self.assertTrue(line.startswith("config.json: max_request_head: invalid size 'big'"), line)

    def test_bad_counts(self) -> None:
        """
        The caps must be whole numbers, not negative.
        """
        for key in ("max_connections", "max_connections_per_address"):
            self.assert_problem(
                {key: -1}, f"config.json: {key}: must be 0 (no limit) or more, got -1"
            )
            self.assert_problem(
                {key: "100"}, f"config.json: {key}: must be a whole number, got a string"
            )
            self.assert_problem(
                {key: 2.5}, f"config.json: {key}: must be a whole number, got 2.5"
            )

    def test_per_address_follows_a_lower_total(self) -> None:
        """
        Without its own value, the per-address cap is the total cap when
        that is below the default, so lowering ``max_connections`` alone is
        not an error.
        """
        limits = service_of({"max_connections": 10}).connection_limits
        self.assertEqual((limits.max_connections, limits.max_connections_per_address), (10, 10))
        limits = service_of({"max_connections": 0}).connection_limits
        self.assertEqual(limits.max_connections_per_address, 256)

    def test_per_address_above_total(self) -> None:
        """
        A per-address cap above the total cap is an error: it could never
        apply.
        """
        self.assert_problem(
            {"max_connections": 100, "max_connections_per_address": 101},
            "config.json: max_connections_per_address: must not exceed max_connections "
            "(100), got 101",
        )
        self.assert_problem(
            {"max_connections_per_address": 2000},
            "config.json: max_connections_per_address: must not exceed max_connections "
            "(1024), got 2000",
        )

    def test_paths_in_a_sing_box_document(self) -> None:
        """
        Inside a sing-box document the problems name the service's path.
        """
        self.assert_problems(
            {"services": [{"type": "ccm", "max_connections": -5, "max_request_head": "1"}]},
            [
                "config.json: services[0].max_connections: must be 0 (no limit) or more, got -5",
                "config.json: services[0].max_request_head: must be at least 1024 bytes, got 1",
            ],
        )

    def test_misspelled_key(self) -> None:
        """
        A misspelled bound is an unknown key with the right suggestion.
        """
        self.assert_problem(
            {"max_conections": 10},
            "config.json: max_conections: unknown key; did you mean 'max_connections'?",
        )

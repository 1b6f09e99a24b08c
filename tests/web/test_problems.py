"""
Tests for :obj:`ccm.web.problems`: the ring of the last warnings and errors.
"""

from __future__ import annotations

from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ccm.web.problems import MAX_PROBLEM_CHARACTERS, RecentProblems


class RecentProblemsTests(SynchronousTestCase):
    """
    :obj:`RecentProblems` observing its own publisher.
    """

    def setUp(self) -> None:
        self.publisher = LogPublisher()
        self.problems = RecentProblems(self.publisher, size=3)
        self.log = Logger(namespace="test", observer=self.publisher)

    def test_observes_while_running(self) -> None:
        """
        Warnings and errors are kept while the service runs, newest first;
        debug and info are not; after it stops, nothing more is.
        """
        self.log.warn("before start")
        self.problems.startService()
        self.log.info("info {n}", n=1)
        self.log.warn("warned {n}", n=2)
        self.log.error("failed")
        self.problems.stopService()
        self.log.error("after stop")
        texts = [(p.level, p.text, p.namespace) for p in self.problems.problems]
        self.assertEqual(texts, [("error", "failed", "test"), ("warn", "warned 2", "test")])

    def test_bounded(self) -> None:
        """
        Only the newest ``size`` problems stay, and a long text is shortened.
        """
        self.problems.startService()
        self.addCleanup(self.problems.stopService)
        for n in range(5):
            self.log.warn("problem {n}", n=n)
        self.log.warn("x" * 5000)
        problems = self.problems.problems
        self.assertEqual(len(problems), 3)
        self.assertEqual(len(problems[0].text), MAX_PROBLEM_CHARACTERS)
        self.assertEqual(problems[2].text, "problem 3")

    def test_failure(self) -> None:
        """
        A logged failure shows its error message.
        """
        self.problems.startService()
        self.addCleanup(self.problems.stopService)
        try:
            raise ValueError("bad value")
        except ValueError:
            self.log.failure("it failed")
        [problem] = self.problems.problems
        self.assertEqual(problem.level, LogLevel.critical.name)
        self.assertEqual(problem.text, "it failed: bad value")

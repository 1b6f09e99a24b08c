"""
Tests for the test suite's own hygiene: no synchronous test case uses the
global reactor.

Trial checks that the reactor is clean only after an asynchronous test
(:obj:`twisted.trial.unittest.TestCase`).  A call a
:obj:`~twisted.trial.unittest.SynchronousTestCase` leaves on the global
reactor goes unnoticed there and fails whichever asynchronous test runs
next in the same worker, which under ``-j2`` depends on the order: a flaky
failure far from its cause.  Synchronous cases take a
:obj:`twisted.internet.task.Clock` or a memory reactor instead.
"""

from __future__ import annotations

import ast

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

import tests
from tests.test_layout import imports_global_reactor


def _binds(function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> bool:
    """
    Whether ``function`` has a parameter or a local assignment of ``name``.
    """
    arguments = function.args
    parameters = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    if arguments.vararg is not None:
        parameters.append(arguments.vararg)
    if arguments.kwarg is not None:
        parameters.append(arguments.kwarg)
    if any(parameter.arg == name for parameter in parameters):
        return True
    return any(
        isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Store)
        for node in ast.walk(function)
    )


def _uses(node: ast.AST, bound: bool) -> list[int]:
    """
    The lines where ``reactor`` is read under ``node``, when it is not a
    name bound by the enclosing function (``bound``) or by a nested one.
    """
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        bound = bound or _binds(node, "reactor")
    if isinstance(node, ast.Name) and node.id == "reactor" and isinstance(node.ctx, ast.Load):
        return [] if bound else [node.lineno]
    return [line for child in ast.iter_child_nodes(node) for line in _uses(child, bound)]


def global_reactor_in_synchronous_cases(source: str) -> list[str]:
    """
    Where the synchronous test cases of ``source`` read the global reactor,
    as ``Class:line``: classes whose base is named ``SynchronousTestCase``,
    in a module that imports the global reactor.
    """
    if not imports_global_reactor(source):
        return []
    found: list[str] = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        if not any(ast.unparse(base).endswith("SynchronousTestCase") for base in node.bases):
            continue
        found.extend(f"{node.name}:{line}" for line in _uses(node, False))
    return found


class CheckerTests(SynchronousTestCase):
    """
    :obj:`global_reactor_in_synchronous_cases` finds what it should and no
    more.
    """

    def test_found(self) -> None:
        """
        The global reactor read in a synchronous case's method is found, by
        class and line, whichever way the base is named.
        """
        source = (
            "from twisted.internet import reactor\n"
            "from twisted.trial import unittest\n"
            "class A(unittest.SynchronousTestCase):\n"
            "    def test_x(self):\n"
            "        reactor.callLater(1, print)\n"
        )
        self.assertEqual(global_reactor_in_synchronous_cases(source), ["A:5"])

    def test_not_found(self) -> None:
        """
        An asynchronous case may use it; a parameter or a local of that name
        is not the global reactor; nor is anything in a module that does not
        import it.
        """
        for source in (
            "from twisted.internet import reactor\n"
            "from twisted.trial.unittest import TestCase\n"
            "class A(TestCase):\n"
            "    def test_x(self):\n"
            "        reactor.callLater(1, print)\n",
            "from twisted.internet import reactor\n"
            "from twisted.trial.unittest import SynchronousTestCase\n"
            "class A(SynchronousTestCase):\n"
            "    def make(self, reactor):\n"
            "        return reactor\n"
            "    def test_x(self):\n"
            "        reactor = object()\n"
            "        return reactor\n",
            "from twisted.trial.unittest import SynchronousTestCase\n"
            "class A(SynchronousTestCase):\n"
            "    def test_x(self):\n"
            "        return reactor\n",
        ):
            self.assertEqual(global_reactor_in_synchronous_cases(source), [], source)


class SuiteTests(SynchronousTestCase):
    """
    The suite keeps the rule.
    """

    def test_synchronous_cases_leave_the_global_reactor_alone(self) -> None:
        """
        No synchronous test case in ``tests/`` reads the global reactor.
        """
        root = FilePath(tests.__file__).parent()
        found = {
            path.path: uses
            for path in root.walk()
            if path.basename().endswith(".py")
            for uses in [global_reactor_in_synchronous_cases(path.getContent().decode("utf-8"))]
            if uses
        }
        self.assertEqual(found, {})

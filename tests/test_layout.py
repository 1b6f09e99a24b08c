"""
Tests for the layout of the ``ccm`` package: every module names its tests
in a ``test-case-name`` header that imports, no module but :obj:`ccm.tap`
imports the global reactor, no module grows past the style guide's
ceiling of 400 lines, and no modules import each other in a circle.

The checks read the source of the package that is imported, so they hold
for the checkout and for the installed package alike.
"""

from __future__ import annotations

import ast
import importlib
import re
from typing import Collection, Mapping

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

import ccm

#: The style guide's hard ceiling; about 300 lines stays the aim.
MAX_MODULE_LINES = 400
#: The one module that may import the global reactor.
REACTOR_MODULE = "ccm.tap"

_HEADER = re.compile(r"# -\*- test-case-name: (?P<names>[\w.,]+) -\*-\Z")


def package_modules(root: FilePath[str], package: str) -> dict[str, FilePath[str]]:
    """
    Every Python module under ``root``, the directory of ``package``, by
    dotted name (a package by the name of its ``__init__``).
    """
    modules = {}
    for path in root.walk():
        if path.isfile() and path.basename().endswith(".py"):
            parts = path.segmentsFrom(root)
            parts[-1] = parts[-1][: -len(".py")]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def named_tests(source: str) -> list[str] | None:
    """
    The test modules a module's first line names, or None when that line
    is not a ``test-case-name`` header.
    """
    first = source.split("\n", 1)[0]
    match = _HEADER.match(first)
    if match is None:
        return None
    return match.group("names").split(",")


def header_problems(module: str, source: str) -> list[str]:
    """
    What is wrong with ``module``'s ``test-case-name`` header: missing, or
    naming a test module that does not import.
    """
    names = named_tests(source)
    if names is None:
        return [f"{module}: the first line is not a test-case-name header"]
    problems = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            problems.append(f"{module}: test-case-name {name} does not import: {error}")
    return problems


def imports_global_reactor(source: str) -> bool:
    """
    Whether ``source`` imports ``twisted.internet.reactor``, at module level
    or inside a function.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.module == "twisted.internet.reactor":
                return True
            if node.module == "twisted.internet" and any(
                alias.name == "reactor" for alias in node.names
            ):
                return True
        elif isinstance(node, ast.Import):
            if any(alias.name == "twisted.internet.reactor" for alias in node.names):
                return True
    return False


def ccm_imports(source: str, modules: Collection[str]) -> set[str]:
    """
    The modules of ``modules`` that ``source`` imports, at module level or
    inside a function: ``from a.b import c`` imports ``a.b``, and ``a.b.c``
    too when that is a module.
    """
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        imported.update(name for name in names if name in modules)
    return imported


def import_cycle(graph: Mapping[str, Collection[str]]) -> list[str] | None:
    """
    One circle of imports in ``graph`` (each module to those it imports),
    as the modules along it with the first repeated at the end, or None
    when there is none.
    """
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if imported in path:
                return path[path.index(imported) :] + [imported]
            if imported not in done:
                found = visit(imported)
                if found is not None:
                    return found
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done:
            found = visit(module)
            if found is not None:
                return found
    return None


class CheckerTests(SynchronousTestCase):
    """
    The checks below find what they look for: a test that could not fail
    would say nothing.
    """

    def test_header_naming_a_missing_module(self) -> None:
        """
        A header naming a test module that does not exist is a problem;
        one naming modules that exist is not.
        """
        source = "# -*- test-case-name: tests.upstream.test_socks -*-\n"
        [problem] = header_problems("ccm.upstream.socks5", source)
        self.assertIn("ccm.upstream.socks5: test-case-name tests.upstream.test_socks", problem)
        self.assertEqual(
            header_problems(
                "ccm.upstream.handshake",
                "# -*- test-case-name: tests.upstream.test_http_connect,"
                "tests.upstream.test_socks5 -*-\n",
            ),
            [],
        )

    def test_missing_header(self) -> None:
        """
        A module whose first line is not the header is a problem, even
        when the header comes later.
        """
        for source in ('"""\nA module.\n"""\n', '"""x"""\n# -*- test-case-name: tests -*-\n'):
            self.assertEqual(
                header_problems("ccm.x", source),
                ["ccm.x: the first line is not a test-case-name header"],
            )

    def test_global_reactor_imports(self) -> None:
        """
        Each way of importing the global reactor is found, also inside a
        function; importing other names of ``twisted.internet`` is not.
        """
        for source in (
            "from twisted.internet import reactor\n",
            "from twisted.internet import task, reactor as r\n",
            "import twisted.internet.reactor\n",
            "def f():\n    from twisted.internet import reactor\n",
        ):
            self.assertTrue(imports_global_reactor(source), source)
        for source in (
            "from twisted.internet import task\n",
            "from twisted.internet.interfaces import IReactorTime\n",
            "reactor = None\n",
        ):
            self.assertFalse(imports_global_reactor(source), source)

    def test_imports(self) -> None:
        """
        Imports of the package's modules are found in each form; other
        imports are not.
        """
        modules = {"ccm.pool", "ccm.pool.windows", "ccm.units"}
        source = (
            "import os\n"
            "from ccm.pool import windows\n"
            "from ccm.pool.windows import Window\n"
            "def f():\n    import ccm.units\n"
        )
        self.assertEqual(ccm_imports(source, modules), modules)

    def test_import_cycle(self) -> None:
        """
        A circle of imports is found, however long; imports that only
        converge are no circle.
        """
        self.assertEqual(
            import_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}), ["a", "b", "c", "a"]
        )
        self.assertIsNone(import_cycle({"a": ["b", "c"], "b": ["c"], "c": []}))

    def test_modules_found(self) -> None:
        """
        The walk finds modules and packages by their dotted names.
        """
        modules = package_modules(FilePath(ccm.__file__).parent(), "ccm")
        self.assertIn("ccm", modules)
        self.assertIn("ccm.tap", modules)
        self.assertIn("ccm.proxy.exchange", modules)
        self.assertEqual(modules["ccm.pool"].basename(), "__init__.py")


class LayoutTests(SynchronousTestCase):
    """
    The package keeps the layout the style guide asks for.
    """

    def setUp(self) -> None:
        self.modules = package_modules(FilePath(ccm.__file__).parent(), "ccm")
        self.sources = {
            name: path.getContent().decode("utf-8") for name, path in self.modules.items()
        }

    def test_test_case_names(self) -> None:
        """
        Every module starts with a ``test-case-name`` header, and every test
        module it names imports.
        """
        problems = [
            problem
            for name, source in sorted(self.sources.items())
            for problem in header_problems(name, source)
        ]
        self.assertEqual(problems, [])

    def test_only_tap_imports_the_global_reactor(self) -> None:
        """
        No module but :obj:`ccm.tap` imports the global reactor: everything
        else is given the reactor, or a clock, it uses.
        """
        importers = sorted(
            name for name, source in self.sources.items() if imports_global_reactor(source)
        )
        self.assertEqual(importers, [REACTOR_MODULE])

    def test_module_size(self) -> None:
        """
        No module is longer than :obj:`MAX_MODULE_LINES`.
        """
        long_modules = {
            name: source.count("\n")
            for name, source in self.sources.items()
            if source.count("\n") > MAX_MODULE_LINES
        }
        self.assertEqual(long_modules, {})

    def test_no_import_cycles(self) -> None:
        """
        No modules import each other in a circle, directly or through
        others: the rooms depend on each other one way (the credential on
        the window state's modules, the pools on the credential, for
        example).
        """
        graph = {
            name: ccm_imports(source, self.modules) - {name}
            for name, source in self.sources.items()
        }
        self.assertIsNone(import_cycle(graph))

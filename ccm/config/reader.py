# -*- test-case-name: tests.config.test_reader -*-
"""
Typed reading of JSON objects with precise problem reports.

An :obj:`ObjectReader` reads one JSON object; every wrong type, bad value or
unknown key becomes one line in a shared :obj:`Problems` list, naming the JSON
path, so a configuration is checked in one pass and all its problems are
reported together.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, TypeVar

from ccm.units import parse_duration

T = TypeVar("T")


def json_path(parent: str, key: str | int) -> str:
    """
    Extend a JSON path: ``json_path("services[0]", "users")`` is
    ``"services[0].users"``, and an integer key adds an index.
    """
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def describe_type(value: object) -> str:
    """
    Name a JSON value's type the way JSON does.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class Problems:
    """
    The problems found in one configuration source, one line each.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        """
        Record that the value at ``path`` is wrong, and why.
        """
        where = f"{self.source}: {path}" if path else self.source
        line = f"{where}: {message}"
        # An outbound used by several detours is checked once per use.
        if line not in self.lines:
            self.lines.append(line)

    def __bool__(self) -> bool:
        return bool(self.lines)


class ObjectReader:
    """
    Read typed fields out of one JSON object, reporting problems by path.

    Every key not in ``known`` is reported as unknown, with the closest known
    key suggested.  Keys in ``ignored`` are accepted and collected in
    :obj:`ignored_present` so the caller can warn about them.
    """

    def __init__(
        self,
        problems: Problems,
        obj: dict[str, Any],
        path: str,
        known: Iterable[str],
        ignored: Iterable[str] = (),
    ) -> None:
        self.problems = problems
        self.obj = obj
        self.path = path
        known_keys = list(known)
        ignored_keys = set(ignored)
        self.ignored_present = sorted(k for k in obj if k in ignored_keys)
        for key in obj:
            if key in known_keys or key in ignored_keys:
                continue
            close = difflib.get_close_matches(key, known_keys, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.add(json_path(path, key), f"unknown key{hint}")

    def where(self, key: str) -> str:
        """
        The JSON path of ``key`` in this object.
        """
        return json_path(self.path, key)

    def has(self, key: str) -> bool:
        """
        Whether ``key`` is present and not null.
        """
        return self.obj.get(key) is not None

    def _typed(self, key: str, default: T, kind: type[T], wanted: str) -> T:
        value = self.obj.get(key)
        if value is None:
            return default
        if not isinstance(value, kind):
            self.problems.add(
                self.where(key), f"must be {wanted}, got {describe_type(value)}"
            )
            return default
        return value

    def string(self, key: str, default: str = "") -> str:
        """
        A string field.
        """
        return self._typed(key, default, str, "a string")

    def boolean(self, key: str, default: bool = False) -> bool:
        """
        A boolean field.
        """
        return self._typed(key, default, bool, "true or false")

    def integer(
        self, key: str, default: int, minimum: int, maximum: int, bounds: str = ""
    ) -> int:
        """
        An integer field within ``minimum``..``maximum``; ``bounds`` overrides
        the wording of the range in the message.
        """
        value = self.obj.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            got = repr(value) if isinstance(value, float) else describe_type(value)
            self.problems.add(self.where(key), f"must be a whole number, got {got}")
            return default
        if not minimum <= value <= maximum:
            wording = bounds or f"between {minimum} and {maximum}"
            self.problems.add(self.where(key), f"must be {wording}, got {value}")
            return default
        return value

    def number(self, key: str, default: float, minimum: float) -> float:
        """
        A number field not below ``minimum``.
        """
        value = self.obj.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problems.add(
                self.where(key), f"must be a number, got {describe_type(value)}"
            )
            return default
        if value < minimum:
            self.problems.add(
                self.where(key), f"must not be below {minimum:g}, got {value:g}"
            )
            return default
        return float(value)

    def duration(self, key: str, default: float, allow_zero: bool = False) -> float:
        """
        A positive Go-style duration string such as ``"60s"``, in seconds;
        with ``allow_zero``, ``"0s"`` too.
        """
        text = self.string(key)
        if not text:
            return default
        try:
            seconds = parse_duration(text)
        except ValueError as error:
            self.problems.add(self.where(key), str(error))
            return default
        if seconds < 0 or (seconds == 0 and not allow_zero):
            need = "zero or positive" if allow_zero else "positive"
            self.problems.add(self.where(key), f"must be {need}, got {text!r}")
            return default
        return seconds

    def strings(self, key: str) -> tuple[str, ...]:
        """
        A string or an array of strings (sing-box accepts both).
        """
        value = self.obj.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list):
            result = []
            for index, item in enumerate(value):
                if isinstance(item, str):
                    result.append(item)
                else:
                    self.problems.add(
                        json_path(self.where(key), index),
                        f"must be a string, got {describe_type(item)}",
                    )
            return tuple(result)
        self.problems.add(
            self.where(key),
            f"must be a string or an array of strings, got {describe_type(value)}",
        )
        return ()

    def objects(self, key: str) -> list[tuple[str, dict[str, Any]]]:
        """
        An array of objects, with the JSON path of each.
        """
        value = self.obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problems.add(
                self.where(key), f"must be an array, got {describe_type(value)}"
            )
            return []
        result = []
        for index, item in enumerate(value):
            path = json_path(self.where(key), index)
            if isinstance(item, dict):
                result.append((path, item))
            else:
                self.problems.add(path, f"must be an object, got {describe_type(item)}")
        return result

    def object(self, key: str) -> dict[str, Any] | None:
        """
        A nested object, or None when absent.
        """
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problems.add(
                self.where(key), f"must be an object, got {describe_type(value)}"
            )
            return None
        return value

"""The tests' one polling helper: wait for a condition with a deadline, never a fixed sleep.

`wait_until(predicate)` in plain code and `await until(predicate)` on an event loop (the predicate may be a
coroutine function) share the rule: call it every `interval` seconds until it returns something truthy, which is
returned; an exception counts as "not yet" and the last one is chained to the `TimeoutError` after `timeout` s.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class _Deadline:
    def __init__(self, timeout: float, what: str, predicate: object) -> None:
        self.timeout = timeout
        self.what = what or repr(predicate)
        self.end = time.monotonic() + timeout
        self.last_error: BaseException | None = None
        self.last_value: object = None

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def error(self) -> TimeoutError:
        error = TimeoutError(f"timed out after {self.timeout:g} s waiting for {self.what}; last: {self.last_value!r}")
        error.__cause__ = self.last_error
        return error


def wait_until(predicate: Callable[[], T], timeout: float = 20.0, what: str = "", interval: float = 0.01) -> T:
    """Call `predicate()` until it returns something truthy (returned), or raise TimeoutError after `timeout` s."""
    deadline = _Deadline(timeout, what, predicate)
    while True:
        try:
            value = predicate()
            if value:
                return value
            deadline.last_value = value
        except Exception as exc:  # "not yet"
            deadline.last_error = exc
        if deadline.expired():
            raise deadline.error()
        time.sleep(interval)


async def until(
    predicate: Callable[[], T | Awaitable[T]], timeout: float = 20.0, what: str = "", interval: float = 0.01
) -> T:
    """`wait_until` on the event loop: awaits the predicate's result when it is awaitable, sleeps with asyncio."""
    deadline = _Deadline(timeout, what, predicate)
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value  # type: ignore[return-value]
            deadline.last_value = value
        except Exception as exc:  # "not yet"
            deadline.last_error = exc
        if deadline.expired():
            raise deadline.error()
        await asyncio.sleep(interval)

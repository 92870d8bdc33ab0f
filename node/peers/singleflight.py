"""Single flight: concurrent calls for one key share one run of the work.

A node that forwards reads to owners uses it so that a stampede on one key
(many callers at once, typically for a popular or just-expired key) costs
the owner one request, not one per caller. The idea is groupcache's
``singleflight``, reshaped for asyncio:

- The first caller of a key runs the work itself, inline; later callers
  wait for its outcome through ``asyncio.shield``, so a waiter that is
  cancelled leaves alone and the others keep waiting.
- If the first caller is cancelled while others wait, the others are not:
  the work is started again in a task of its own and they get its outcome.
  (The alternative, running every flight in a task, costs two extra turns
  of the event loop per call: under load a forwarded read through a
  coalescing node then ran 15% slower than with no coalescing at all. In a
  node the first caller is cancelled only when the node stops, since
  aiohttp does not cancel handlers whose client went away.)
- Every caller gets the same outcome: the same result object, or the same
  exception raised again. Callers that may change what they receive must
  copy it first.
- A flight leaves the table the moment its work ends, so a call made after
  that starts a new flight; ``forget(key)`` does the same earlier, for a
  caller that knows the answer in the air is already out of date (a write
  to the key went through this node).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

Work = Callable[[], Coroutine[Any, Any, T]]


class _Flight(Generic[T]):
    """One key's work in the air: its outcome, and whether anyone waits for it."""

    __slots__ = ("future", "joined", "task")

    def __init__(self, future: asyncio.Future[T]) -> None:
        self.future = future
        self.joined = 0
        # Set when the work was handed over to a task of its own.
        self.task: asyncio.Task[T] | None = None


class SingleFlight(Generic[K, T]):
    """Shares one run of ``work`` among the concurrent ``run(key, work)`` calls of a key.

    Use from one event loop. ``shared`` counts the calls that joined a
    flight already in the air instead of starting one.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        # key -> its flight; a flight is here only while its work runs.
        self._flights: dict[K, _Flight[T]] = {}
        self._closed = False
        self.shared = 0

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: K, work: Work[T]) -> T:
        """The outcome of ``work()``, run once for all concurrent callers of ``key``.

        ``work`` is called by the caller that starts the flight, and once more
        in a task if that caller is cancelled while others wait. Raises
        whatever the work raised, or ``CancelledError`` when this caller was
        cancelled.
        """
        flight = self._flights.get(key)
        if flight is not None:
            self.shared += 1
            flight.joined += 1
            return await asyncio.shield(flight.future)
        loop = self._loop
        if loop is None or loop.is_closed():
            # Once per loop: asyncio.get_running_loop() makes a getpid()
            # system call on Python 3.11.
            loop = self._loop = asyncio.get_running_loop()
        flight = _Flight(loop.create_future())
        self._flights[key] = flight
        try:
            result = await work()
        except asyncio.CancelledError:
            self._hand_over(key, flight, work)
            raise
        except Exception as exc:
            self._land(key, flight)
            flight.future.set_exception(exc)
            # Marked as read: when nobody waits, asyncio must not log it as lost.
            flight.future.exception()
            raise
        except BaseException:
            self._land(key, flight)
            flight.future.cancel()
            raise
        self._land(key, flight)
        flight.future.set_result(result)
        return result

    def forget(self, key: K) -> None:
        """Later calls for ``key`` start a new flight; callers already waiting
        keep the one in the air."""
        self._flights.pop(key, None)

    def cancel_all(self) -> None:
        """The node is stopping: waiters get ``CancelledError``, nothing is handed over."""
        self._closed = True
        flights, self._flights = self._flights, {}
        for flight in flights.values():
            if flight.task is not None:
                flight.task.cancel()
            flight.future.cancel()

    def _land(self, key: K, flight: _Flight[T]) -> None:
        # Only our own entry: after forget(), a newer flight may hold the key.
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _hand_over(self, key: K, flight: _Flight[T], work: Work[T]) -> None:
        """The caller running the work was cancelled: run it again for the others."""
        if not flight.joined or self._closed or flight.future.done():
            self._land(key, flight)
            flight.future.cancel()
            return
        task = asyncio.get_running_loop().create_task(work())
        flight.task = task

        def finish(done: asyncio.Task[T]) -> None:
            self._land(key, flight)
            if flight.future.done():
                return
            if done.cancelled():
                flight.future.cancel()
            elif (error := done.exception()) is not None:
                flight.future.set_exception(error)
                flight.future.exception()
            else:
                flight.future.set_result(done.result())

        task.add_done_callback(finish)

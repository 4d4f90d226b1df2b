"""One owner thread per engine, and the bridge from its blocking loop to asyncio.

llama.cpp contexts are not thread-safe and ONNX/espeak calls block for tens of
milliseconds, so each engine lives on exactly one thread and the event loop only ever
awaits it. Jobs run one at a time, the most urgent first (then in submission order),
which also makes several turns
sharing an engine take turns fairly (FIFO at job granularity).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Producer = Callable[[Callable[[T], None], threading.Event], None]
"""A blocking function run on the engine thread: `produce(emit, stop)`.

It calls `emit(item)` for each item and must return soon after `stop` is set
(checked between tokens or chunks).
"""

_ITEM, _ERROR, _END = range(3)


class _JobQueue:
    """One worker thread running submitted jobs, highest priority first.

    Each submission pushes the job on a heap and queues one "run the most urgent job"
    step on a single-worker executor (which keeps the executor's clean shutdown at
    interpreter exit): as many steps as jobs, each taking the best job at that moment.
    """

    def __init__(self, name: str) -> None:
        self._jobs: list[tuple[int, int, concurrent.futures.Future[Any], Callable[[], Any]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def submit(self, fn: Callable[[], R], priority: int) -> concurrent.futures.Future[R]:
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        with self._lock:
            heapq.heappush(self._jobs, (-priority, next(self._order), future, fn))
        self._executor.submit(self._run_most_urgent)
        return future

    def _run_most_urgent(self) -> None:
        with self._lock:
            if not self._jobs:
                return
            _, _, future, fn = heapq.heappop(self._jobs)
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits it
            future.set_exception(exc)

    def shutdown(self) -> None:
        with self._lock:
            for _, _, future, _ in self._jobs:
                future.cancel()
            self._jobs.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)


class EngineThread(Generic[T]):
    """A single worker thread that owns one engine; jobs run most urgent first.

    Args:
      name: Thread name, shown in logs and debuggers (e.g. "llm-0", "piper-joe").
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue = _JobQueue(name)

    async def call(self, fn: Callable[..., R], *args: object, priority: int = 0) -> R:
        """Run `fn(*args)` on the engine thread and return its result.

        `priority`: a job of higher priority runs before those waiting with a lower one
        (the one running is never interrupted).
        """
        return await asyncio.wrap_future(self._queue.submit(lambda: fn(*args), priority))

    async def stream(self, produce: Producer[T], stop: threading.Event, priority: int = 0
                     ) -> AsyncGenerator[T, None]:
        """Run `produce` on the engine thread, yielding what it emits as it emits it.

        The items are few and bounded by the producer itself (tokens up to the reply
        cap, audio per text chunk), so the hand-over queue needs no back-pressure.
        When the consumer stops early (break, exception, task cancellation) the
        producer's stop event is set and the generator waits for the in-flight job to
        return before finishing, so the engine is never used by two jobs at once.

        Yields:
          Each item passed to `emit`, in order.

        Raises:
          Whatever `produce` raised, re-raised on the loop.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, object]] = asyncio.Queue()
        job_stop = threading.Event()

        def post(kind: int, value: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more

        def job() -> None:
            either_stop = AnyEvent(stop, job_stop)
            try:
                produce(lambda item: post(_ITEM, item), either_stop)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the loop
                post(_ERROR, exc)
            else:
                post(_END, None)

        future = self._queue.submit(job, priority)
        try:
            while True:
                kind, value = await queue.get()
                if kind == _ITEM:
                    yield value  # type: ignore[misc]
                elif kind == _ERROR:
                    raise value  # type: ignore[misc]
                else:
                    return
        finally:
            job_stop.set()
            if not future.done():
                await asyncio.shield(asyncio.wrap_future(future))

    def shutdown(self) -> None:
        """Drop the queued jobs, let the running one finish, and stop the thread."""
        self._queue.shutdown()


class AnyEvent(threading.Event):
    """Looks like one threading.Event; set when either of two events is set."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        super().__init__()
        self._first = first
        self._second = second

    def is_set(self) -> bool:
        """True once either event is set."""
        return self._first.is_set() or self._second.is_set()

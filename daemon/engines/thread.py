"""One owner thread per engine, and the bridge from its blocking loop to asyncio.

llama.cpp contexts are not thread-safe and ONNX/espeak calls block for tens of
milliseconds, so each engine lives on exactly one thread and the event loop only ever
awaits it. Jobs run one at a time in submission order, which also makes several turns
sharing an engine take turns fairly (FIFO at job granularity).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Producer = Callable[[Callable[[T], None], threading.Event], None]
"""A blocking function run on the engine thread: `produce(emit, stop)`.

It calls `emit(item)` for each item and must return soon after `stop` is set
(checked between tokens or chunks).
"""

_ITEM, _ERROR, _END = range(3)


class EngineThread(Generic[T]):
    """A single worker thread that owns one engine.

    Args:
      name: Thread name, shown in logs and debuggers (e.g. "llm-0", "piper-joe").
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, fn: Callable[..., R], *args: object) -> R:
        """Run `fn(*args)` on the engine thread and return its result."""
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    async def stream(self, produce: Producer[T], stop: threading.Event
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

        future = self._executor.submit(job)
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
        """Let queued jobs finish and stop the thread."""
        self._executor.shutdown(wait=True, cancel_futures=True)


class AnyEvent(threading.Event):
    """Looks like one threading.Event; set when either of two events is set."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        super().__init__()
        self._first = first
        self._second = second

    def is_set(self) -> bool:
        """True once either event is set."""
        return self._first.is_set() or self._second.is_set()

"""The burst of llama.cpp threads: when it is used, when it ends, and llama.cpp obeying it.

The policy's inputs (other processes' CPU use, this process's running threads, the
clock) are passed in as plain functions for the decision tests: what they read from
/proc is tested on its own below, with real busy processes and threads.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time

import llama_cpp
import pytest

from daemon.config import LlmConfig
from daemon.llm.gguf import llm_gguf
from daemon.llm.llama import KvStateStore, LlamaContext
from daemon.llm.threads import (
    OtherProcessesCpu,
    ThreadBurst,
    Threads,
    other_threads_running,
)

FLOOR = Threads(1, 1)
BURST = Threads(2, 2)


def policy(others: list[float | None] | None = None, running: list[int] | None = None,
           burst_tokens: int = 4) -> ThreadBurst:
    """A burst of 2 over a floor of 1, fed the readings given (the last one repeats)."""
    others_left = list(others or [0.0])
    running_left = list(running or [0])

    def next_other() -> float | None:
        return others_left.pop(0) if len(others_left) > 1 else others_left[0]

    def next_running(_own: int) -> int:
        return running_left.pop(0) if len(running_left) > 1 else running_left[0]

    return ThreadBurst(FLOOR, 2, burst_tokens, next_other, next_running)


def test_a_quiet_machine_bursts_for_the_prompt_and_the_first_tokens_only() -> None:
    burst = policy(burst_tokens=3)
    steps = [burst.start_reply()]
    steps += [burst.after_step(sampled, None if sampled == 1 else 0.013)
              for sampled in range(1, 6)]
    assert steps == [BURST, BURST, BURST, BURST, FLOOR, FLOOR]
    assert burst.burst_steps == 4


def test_no_burst_while_another_process_uses_a_core() -> None:
    assert policy(others=[1.0]).start_reply() == FLOOR
    assert policy(others=[0.1]).start_reply() == BURST  # background noise only
    assert policy(others=[None]).start_reply() == FLOOR  # no /proc: never guess


def test_no_burst_while_another_thread_of_the_daemon_runs() -> None:
    assert policy(running=[1, 1, 1]).start_reply() == FLOOR
    # The event loop finishing its iteration: gone at the second look.
    assert policy(running=[1, 0]).start_reply() == BURST


def test_the_burst_ends_when_the_tts_starts() -> None:
    burst = policy(running=[0, 0, 1], burst_tokens=10)
    assert burst.start_reply() == BURST
    assert burst.after_step(1, None) == BURST
    assert burst.after_step(2, 0.013) == FLOOR  # the first chunk's synthesis runs
    assert not burst.bursting


def test_a_slow_step_ends_the_burst_of_its_reply() -> None:
    burst = policy(burst_tokens=10)
    burst.start_reply()
    burst.after_step(1, None)
    assert burst.after_step(2, 0.013) == BURST
    assert burst.after_step(3, 0.015) == BURST  # within the spread of quiet steps
    assert burst.after_step(4, 0.030) == FLOOR  # the second thread waited for a core
    assert burst.after_step(5, 0.013) == FLOOR
    assert burst.start_reply() == BURST  # the next reply looks again


def test_a_reply_that_ends_mid_burst_goes_back_to_the_floor() -> None:
    burst = policy(burst_tokens=10)
    burst.start_reply()
    burst.after_step(1, None)
    assert burst.end_reply() == FLOOR
    assert burst.end_reply() is None  # nothing to undo twice
    assert not burst.bursting


def test_a_burst_no_wider_than_the_floor_is_off() -> None:
    burst = ThreadBurst(Threads(2, 4), 2, 12, lambda: 0.0, lambda _own: 0)
    assert burst.start_reply() == Threads(2, 4)
    assert not burst.bursting


def test_other_processes_cpu_sees_a_busy_process() -> None:
    meter = OtherProcessesCpu()
    meter.cores_busy()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        busy = meter.cores_busy()
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None
    assert busy >= 0.5  # a whole core for a second, less what the scheduler gave others


def test_other_threads_running_sees_a_thread_at_work() -> None:
    own = threading.get_native_id()
    data = bytes(64 << 20)
    seen: list[int] = []
    done = threading.Event()

    def hash_forever() -> None:  # hashlib releases the GIL on large buffers
        while not done.is_set():
            hashlib.sha256(data).digest()

    worker = threading.Thread(target=hash_forever)
    worker.start()
    try:
        for _ in range(50):
            seen.append(other_threads_running(own))
            time.sleep(0.002)
    finally:
        done.set()
        worker.join()
    assert max(seen) >= 1


@pytest.mark.skipif(b"OPENMP = 1" in llama_cpp.llama_print_system_info(),
                    reason="this llama-cpp-python build uses OpenMP: bursts are off "
                           "(scripts/bootstrap.sh builds it without)")
def test_llama_cpp_decodes_the_first_tokens_with_the_burst_and_the_rest_with_one() -> None:
    context = LlamaContext(llm_gguf("smollm2"),
                           LlmConfig(n_ctx=512, seed=7, burst_threads=2, burst_tokens=4),
                           KvStateStore(64 << 20), "test")
    # The machine's readings are replaced: the test is about obeying the policy.
    context._burst = ThreadBurst(FLOOR, 2, 4, lambda: 0.0, lambda _own: 0)
    ctx = context._llama.ctx
    seen: list[tuple[int, int]] = []

    def emit(event: object) -> None:  # on the context's thread, between two steps
        seen.append((llama_cpp.llama_n_threads(ctx), llama_cpp.llama_n_threads_batch(ctx)))

    messages = [{"role": "system", "content": "You are a blacksmith."},
                {"role": "user", "content": "What do you sell?"}]
    context.reply("smith", messages, emit, threading.Event(), max_tokens=12)
    assert len(seen) >= 8
    assert seen[1] == (2, 2)  # ReplyStarted comes before the prompt step
    assert (1, 1) in seen[5:]
    assert seen.count((2, 2)) <= 4
    assert (llama_cpp.llama_n_threads(ctx), llama_cpp.llama_n_threads_batch(ctx)) == (1, 1)
    # A reply shorter than the burst: the floor comes back when it ends.
    context.reply("smith", [*messages, {"role": "assistant", "content": "Swords."},
                            {"role": "user", "content": "And shields?"}],
                  lambda event: None, threading.Event(), max_tokens=2)
    assert (llama_cpp.llama_n_threads(ctx), llama_cpp.llama_n_threads_batch(ctx)) == (1, 1)

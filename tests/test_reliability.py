"""The daemon holds at its boundaries: the reliability suite's quick form, on a real daemon.

`daemon.bench.reliability` plays fuzzed, hostile, vanishing and greedy clients against a
real daemon process while two good clients keep talking (the soak form of the same suite
is `python -m daemon.bench.reliability`; its figures are in BENCHMARKS.md, "Reliability").
Timings are reported there, never asserted here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from daemon.bench import reliability as suite
from daemon.launcher import DaemonProcess

pytest.importorskip("hypothesis")


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict, str]]:
    """One quick run of the whole suite, then SIGTERM during a turn: (report, daemon log)."""
    folder = tmp_path_factory.mktemp("reliability")
    daemon = suite.start_daemon(folder)
    try:
        report = asyncio.run(asyncio.wait_for(suite.run_suite(daemon, suite.QUICK,
                                                              progress=lambda _: None), 900))
        report["sigterm"] = asyncio.run(asyncio.wait_for(suite.sigterm_during_a_turn(daemon),
                                                         60))
    finally:
        daemon.stop()
    yield report, daemon.log_text()


def test_good_clients_keep_completing_whole_turns_throughout(suite_run: tuple[dict, str]
                                                             ) -> None:
    report, _log = suite_run
    good = report["good_clients"]
    assert good["problems"] == []
    assert good["turns_during_abuse"] >= 2, "the good clients were served during the abuse"
    assert report["end"]["alive"] and report["end"]["answers"]


def test_fuzzed_input_gets_documented_error_codes_only(suite_run: tuple[dict, str]) -> None:
    report, log = suite_run
    fuzz = report["phases"]["fuzz"]
    assert fuzz["messages"] >= suite.QUICK.fuzz_messages - 5  # a few cases are empty
    assert fuzz["replies"] > 0
    assert fuzz["undocumented_codes"] == []
    assert "Traceback" not in log, "no handler failed on any input"


def test_connections_that_are_not_zmtp3_or_break_limits_are_closed(suite_run: tuple[dict, str]
                                                                  ) -> None:
    raw = suite_run[0]["phases"]["raw"]
    assert raw["closed_by_daemon"] == raw["to_be_closed"]


def test_connections_beyond_the_limit_are_refused(suite_run: tuple[dict, str]) -> None:
    idle = suite_run[0]["phases"]["idle"]
    assert idle["admitted"] + idle["refused"] == suite.QUICK.idle_connections
    assert idle["refused"] > 0 and idle["admitted"] < 64


def test_every_turn_of_a_barge_in_storm_ends_exactly_once(suite_run: tuple[dict, str]) -> None:
    storm = suite_run[0]["phases"]["storm"]
    assert storm["problems"] == []
    assert storm["done"] + storm["cancelled"] + storm["error"] == suite.QUICK.storm_turns
    assert storm["cancelled"] >= suite.QUICK.storm_turns // 2


def test_vanished_clients_are_forgotten_and_memory_and_descriptors_come_back(
        suite_run: tuple[dict, str]) -> None:
    report, log = suite_run
    phases = report["phases"]
    forgotten = len(re.findall(r"disconnected; cancelling", log))
    vanished = (phases["killed"]["killed"] + phases["idle"]["admitted"]
                + phases["mic_leavers"]["left_with_mic_open"])
    assert forgotten >= vanished, f"{forgotten} clients forgotten, {vanished} left"
    assert report["end"]["fds"] == report["start"]["fds_after_warm_up"]
    # The bound: memory within 100 MB of where it was after warm-up.
    assert report["end"]["rss_growth_mb"] < 100, report["rss_mb_after_phase"]


def test_a_microphone_flood_is_bounded_and_does_not_block_other_clients(
        suite_run: tuple[dict, str]) -> None:
    flood = suite_run[0]["phases"]["mic_flood"]
    assert flood["mic_audio_too_fast_errors"] >= 1, "audio beyond the backlog is dropped"
    assert flood["probes"] >= 5, "another client's control messages were answered meanwhile"


def test_client_text_cannot_forge_log_lines(suite_run: tuple[dict, str]) -> None:
    _report, log = suite_run
    assert "'forged\\n2026-12-05 INFO ready on x'" in log, "the fuzzed hello was logged"
    assert not any(line.startswith("2026-12-05 INFO ready on x") for line in log.splitlines())


def test_sigterm_during_a_turn_delivers_its_cancelled_event_and_exits_cleanly(
        suite_run: tuple[dict, str]) -> None:
    sigterm = suite_run[0]["sigterm"]
    assert sigterm["terminal"] == "Cancelled" and sigterm["reason"] == "shutdown"
    assert sigterm["exit_code"] == 0


def test_a_slow_consumer_is_ignored_until_it_reads(suite_run: tuple[dict, str]) -> None:
    _report, log = suite_run
    assert re.search(r"is not reading: \d+ repl\(ies\) dropped", log)


def test_messages_before_hello_of_a_vanished_client_leave_nothing_behind(
        daemon: DaemonProcess) -> None:
    """A client that sends garbage before `hello` and leaves is forgotten too."""
    async def scenario() -> None:
        from daemon.testing.raw_zmtp import RawZmtpClient

        for _ in range(3):
            client = RawZmtpClient("127.0.0.1", daemon.port)
            await client.connect()
            await client.send([b"not json"])
            await client.recv()
            client.reset()

    before = daemon.log_text().count("disconnected; cancelling")
    asyncio.run(asyncio.wait_for(scenario(), 30))
    noticed = asyncio.run(_wait_for_log(daemon, "disconnected; cancelling", before + 3))
    assert noticed, "each vanished client was forgotten"


async def _wait_for_log(daemon: DaemonProcess, text: str, count: int) -> bool:
    for _ in range(100):
        if daemon.log_text().count(text) >= count:
            return True
        await asyncio.sleep(0.1)
    return False

"""Two-tier replies end to end: a daemon process with the embedded model in both tiers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.framing import DecodedAudio
from bridge_protocol.messages import Cancelled
from daemon.launcher import DaemonProcess
from tests.support.aio import run
from tests.support.assertions import assert_complete_turn
from tests.support.configs import TEST_SEED, config_for_tests, config_text

NARRATIVE = {"model": "smollm2", "instances": 1, "n_ctx": 2048, "n_threads": 1,
             "n_threads_batch": 2, "max_reply_tokens": 40, "seed": TEST_SEED + 1,
             "narrative_timeout_ms": 60000}

FAST_BLOCK_SAMPLES = 1102  # 50 ms at 22050 Hz: the "fast" profile
CINEMATIC_BLOCK_SAMPLES = 1323  # 60 ms: the "cinematic" profile


def two_tier_config_text() -> str:
    """The test config plus a narrative tier: blacksmith uses both tiers (the default
    once [llm_narrative] exists), the innkeeper only the fast one, the oracle only the
    narrative one."""
    return config_text(config_for_tests(
        llm_narrative=NARRATIVE,
        npcs={"innkeeper": {"tiers": "fast"}, "oracle": {"tiers": "narrative"}}))


@pytest.fixture(scope="module")
def tiered_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    folder = tmp_path_factory.mktemp("tiers")
    config_path = folder / "two_tiers.toml"
    config_path.write_text(two_tier_config_text())
    process = DaemonProcess(config_path, log_path=folder / "daemon.log").start()
    yield process
    code = process.stop()
    assert code == 0, f"daemon exited with {code}:\n{process.log_text()[-3000:]}"


def turn_with_blocks(address: str, npc: str, line: str, profile: str | None = None
                     ) -> tuple[TurnResult, list[tuple[int, int]]]:
    """Run one turn; also return (chunk_index, sample_count) of every block."""
    blocks: list[tuple[int, int]] = []

    def on_event(event: object, _result: TurnResult) -> None:
        if isinstance(event, DecodedAudio):
            blocks.append((event.header.chunk_index, event.header.sample_count))

    async def scenario() -> TurnResult:
        async with BridgeClient(address) as client:
            return await client.run_turn(npc, line, profile=profile, on_event=on_event)

    return run(scenario()), blocks


def test_a_two_tier_turn_is_one_reply_in_one_voice(tiered_daemon: DaemonProcess) -> None:
    result, blocks = turn_with_blocks(tiered_daemon.address, "blacksmith",
                                      "Can you repair my sword before nightfall?")
    done = assert_complete_turn(result)
    timings = done.timings
    handoff = timings.handoff_chunk_index
    assert handoff is not None and 0 < handoff < len(result.subtitles), result.subtitles
    opener, continuation = result.subtitles[:handoff], result.subtitles[handoff:]
    assert done.reply_text.startswith(" ".join(opener))
    assert done.reply_text == " ".join(opener + continuation)
    # The audio covers both parts, each with its tier's profile.
    opener_blocks = [samples for chunk, samples in blocks if chunk < handoff]
    continuation_blocks = [samples for chunk, samples in blocks if chunk >= handoff]
    assert opener_blocks and continuation_blocks
    assert max(opener_blocks) == FAST_BLOCK_SAMPLES
    assert max(continuation_blocks) == CINEMATIC_BLOCK_SAMPLES
    assert done.profile == "fast"
    stages = [timings.llm_first_token_ms, timings.narrative_first_token_ms, timings.llm_done_ms]
    assert all(s is not None for s in stages) and stages == sorted(stages)
    assert timings.handoff_gap_ms is not None and timings.handoff_gap_ms >= 0
    assert timings.reply_tokens > 0 and timings.prefill_tokens < timings.prompt_tokens


def test_a_per_turn_profile_applies_to_both_tiers(tiered_daemon: DaemonProcess) -> None:
    result, blocks = turn_with_blocks(tiered_daemon.address, "blacksmith",
                                      "What is the best steel for a blade?", profile="cinematic")
    done = assert_complete_turn(result)
    assert done.profile == "cinematic" and done.timings.handoff_chunk_index is not None
    assert max(samples for _, samples in blocks) == CINEMATIC_BLOCK_SAMPLES


def test_single_tier_npcs_beside_a_two_tier_one(tiered_daemon: DaemonProcess) -> None:
    fast, fast_blocks = turn_with_blocks(tiered_daemon.address, "innkeeper", "Any rooms free?")
    narrative, narrative_blocks = turn_with_blocks(tiered_daemon.address, "oracle",
                                                   "What does my future hold?")
    # The innkeeper speaks with the hibari voice: 50 ms at 24 kHz.
    for result, blocks, samples in ((fast, fast_blocks, 1200),
                                    (narrative, narrative_blocks, CINEMATIC_BLOCK_SAMPLES)):
        done = assert_complete_turn(result)
        assert done.timings.handoff_chunk_index is None
        assert done.timings.narrative_first_token_ms is None
        assert max(s for _, s in blocks) == samples


def test_the_welcome_states_the_profile_each_npc_starts_with(
        tiered_daemon: DaemonProcess) -> None:
    async def scenario() -> dict[str, tuple[str, int]]:
        async with BridgeClient(tiered_daemon.address) as client:
            assert client.welcome is not None
            return {npc.npc_id: (npc.profile, npc.prebuffer_ms) for npc in client.welcome.npcs}

    npcs = run(scenario())
    assert npcs["blacksmith"] == ("fast", 240)  # the opener's profile
    assert npcs["oracle"] == ("cinematic", 500)


def test_the_config_used_here_is_valid(tmp_path: Path) -> None:
    from daemon.config_file import load_config

    path = tmp_path / "two_tiers.toml"
    path.write_text(two_tier_config_text())
    config = load_config(path)
    assert config.npc_tiers("blacksmith") == "both"
    assert config.npc_profiles("blacksmith") == ("fast", "cinematic")
    assert config.npc_profiles("blacksmith", "fast") == ("fast", "fast")
    assert config.npc_tiers("innkeeper") == "fast" and config.npc_tiers("oracle") == "narrative"


def test_a_cancel_mid_reply_stops_both_tiers_and_the_next_turn_works(
        tiered_daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[TurnResult, TurnResult]:
        async with BridgeClient(tiered_daemon.address) as client:
            cancels: list[asyncio.Task[None]] = []

            def cancel_on_first_block(event: object, result: TurnResult) -> None:
                if isinstance(event, DecodedAudio) and not cancels:
                    cancels.append(asyncio.ensure_future(client.cancel(result.turn_id)))

            first = await client.run_turn("blacksmith", "Tell me the long tale of your forge.",
                                          on_event=cancel_on_first_block)
            await asyncio.gather(*cancels)
            second = await client.run_turn("blacksmith", "Sorry, go on.")
            return first, second

    first, second = run(scenario())
    assert isinstance(first.terminal, Cancelled) and first.terminal.reason == "cancel"
    done = assert_complete_turn(second)
    assert done.timings.handoff_chunk_index is not None

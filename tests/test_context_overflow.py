"""A conversation that outgrows the model's context: the oldest history goes, not the turn.

Long lines and long replies can fill `[llm] n_ctx` before `history_turns` turns. The
turn that meets a prompt too long drops the oldest half of the history and asks again;
a line that does not fit even without history ends with `text_too_long`, and the NPC
goes on answering. Real daemon processes on the bundled SmolLM2 with the smallest
context the config allows (256 tokens), with llama.cpp in process and through
llama-server (whose 400 answer the daemon reads).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge_protocol.client import BridgeClient, TurnResult
from bridge_protocol.messages import Error, ErrorCode
from daemon.launcher import DaemonProcess
from tests.support.aio import run, wait_until
from tests.support.assertions import assert_complete_turn
from tests.support.configs import write_config
from tests.support.llama_server import find_llama_server

N_CTX = 256
REPLY_TOKENS = 24
LINE = ("Tell me everything you know about the old war, the kings who fought it, the dragons "
        "they rode, the cities that burned, the songs they sing about it in the taverns, and "
        "what happened to the heroes afterwards.")
"""45 tokens: with the reply and the markup, a turn takes ~80 of the 256."""
TOO_LONG = 2 * (
    "Conte-me tudo o que você sabe sobre a velha guerra, os reis que lutaram nela, os "
    "dragões que montavam, as cidades que queimaram, as canções que cantam sobre ela nas "
    "tavernas, e o que aconteceu com os heróis depois, e por favor não deixe nada de fora, "
    "porque eu viajei um caminho muito longo para ouvir esta história de você. ")
"""~300 tokens: more than the whole context, persona or not."""


@pytest.fixture(scope="module", params=["in_process", "llama_server"])
def small_context_daemon(request: pytest.FixtureRequest,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon whose model has a 256-token context, in process or in llama-server."""
    llm: dict[str, object] = {"n_ctx": N_CTX, "max_reply_tokens": REPLY_TOKENS,
                              "instances": 1, "backend": request.param}
    if request.param == "llama_server":
        binary = find_llama_server()
        if binary is None:  # the fixture of tests/support/llama_server.py says how to get one
            request.getfixturevalue("llama_server_binary")
        llm["server_binary"] = binary
    folder = tmp_path_factory.mktemp(f"context-{request.param}")
    config = write_config(folder / "small.toml", llm=llm, asr={"enabled": False},
                          server={"max_text_chars": 1000})
    with DaemonProcess(config, log_path=folder / "daemon.log", ready_timeout_s=240) as process:
        yield process


def test_a_conversation_past_the_context_forgets_its_oldest_turns_and_goes_on(
        small_context_daemon: DaemonProcess) -> None:
    async def scenario() -> list[TurnResult]:
        async with BridgeClient(small_context_daemon.address, client_name="long") as client:
            return [await client.run_turn("oracle", f"{index}. {LINE}", timeout_s=120)
                    for index in range(6)]

    results = run(scenario(), timeout_s=600)
    prompts = [assert_complete_turn(result).timings.prompt_tokens for result in results]
    assert all(0 < tokens <= N_CTX - REPLY_TOKENS for tokens in prompts), prompts
    # A prompt holds the one before it and more, unless history was dropped.
    assert any(later <= earlier for earlier, later in zip(prompts, prompts[1:], strict=False)), \
        prompts



def test_a_conversation_nearing_the_context_is_shortened_after_its_turn_not_during_the_next(
        small_context_daemon: DaemonProcess) -> None:
    """The prefill after a turn sees that a line like its own would not fit next, drops
    the oldest half there, and evaluates the shortened prompt; the next turn then only
    evaluates its own line."""
    daemon = small_context_daemon

    async def scenario() -> TurnResult:
        async with BridgeClient(daemon.address, client_name="ahead") as client:
            assert_complete_turn(await client.run_turn("blacksmith", f"0. {LINE}",
                                                       timeout_s=120))
            log_before = len(daemon.log_text())
            assert_complete_turn(await client.run_turn("blacksmith", f"1. {LINE}",
                                                       timeout_s=120))
            await wait_until(lambda: "prompt evaluated after the turn" in
                             daemon.log_text()[log_before:], timeout_s=60)
            assert "its history shortened" in daemon.log_text()[log_before:]
            return await client.run_turn("blacksmith", f"2. {LINE}", timeout_s=120)

    done = assert_complete_turn(run(scenario(), timeout_s=400))
    # ~45 tokens of line and the chat markup; evaluating the shortened prompt on the
    # turn's own path would add the persona's system turn and the turn kept (~140).
    assert done.timings.prefill_tokens <= 70, done.timings

def test_a_line_too_long_for_the_context_is_refused_by_name_and_the_npc_answers_on(
        small_context_daemon: DaemonProcess) -> None:
    async def scenario() -> tuple[TurnResult, TurnResult]:
        async with BridgeClient(small_context_daemon.address, client_name="pasted") as client:
            refused = await client.run_turn("blacksmith", TOO_LONG, timeout_s=120)
            answered = await client.run_turn("blacksmith", "Can you fix my sword?",
                                             timeout_s=120)
            return refused, answered

    refused, answered = run(scenario(), timeout_s=300)
    error = refused.terminal
    assert isinstance(error, Error), error
    assert error.code == ErrorCode.TEXT_TOO_LONG and error.turn_id == refused.turn_id
    assert "context" in error.message and not refused.pcm
    assert_complete_turn(answered)


def test_a_line_typed_into_a_full_context_has_the_history_shortened_before_enter(
        small_context_daemon: DaemonProcess) -> None:
    """The `typing` prefill meets the full context first: it drops the history then, so
    the `say` finds the shortened prompt evaluated up to the line's last word."""
    typed = f"2. {LINE[:-1]}"  # no full stop: a sentence would start the reply itself

    async def scenario() -> TurnResult:
        async with BridgeClient(small_context_daemon.address, client_name="typist") as client:
            for index in range(2):
                assert_complete_turn(await client.run_turn("innkeeper", f"{index}. {LINE}",
                                                           timeout_s=120))
            log_before = len(small_context_daemon.log_text())
            await client.typing("innkeeper", typed)
            await wait_until(lambda: "prefilled innkeeper's prompt" in
                             small_context_daemon.log_text()[log_before:], timeout_s=60)
            return await client.run_turn("innkeeper", typed, timeout_s=120)

    done = assert_complete_turn(run(scenario(), timeout_s=400))
    # The line's last word and the end-of-turn markup; without the prefill while typing
    # the turn would evaluate the whole shortened prompt (persona, one turn, the line).
    assert done.timings.prefill_tokens <= 12, done.timings


def test_a_persona_with_no_room_for_a_turn_stops_the_start_naming_the_npc(
        tmp_path: Path) -> None:
    """Every turn of that NPC would end in `text_too_long`: the daemon says so at start."""
    lore = " ".join(["The oracle remembers every king, every war and every dragon."] * 20)
    config = write_config(tmp_path / "lore.toml", asr={"enabled": False},
                          llm={"n_ctx": N_CTX, "max_reply_tokens": 96, "instances": 1},
                          npcs={"oracle": {"persona": lore}})
    daemon = DaemonProcess(config, log_path=tmp_path / "daemon.log", ready_timeout_s=240)
    try:
        with pytest.raises(RuntimeError, match="daemon exited"):
            daemon.start()
    finally:
        daemon.stop()
    assert "npcs.oracle.persona: the prompt has" in daemon.log_text()
    assert "does not fit the model's context of 256" in daemon.log_text()

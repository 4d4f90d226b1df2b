"""The addon's GDScript unit tests (godot_addon/test/run_tests.gd) in a real headless Godot.

They cover the ZMTP codec (split, long and invalid frames), the reconnect back-off (100 ms
doubling to 2 s, with jitter), the PCM conversions, the playback queue against Godot's real
mixer (pre-buffer, generator kept alive across a replacement, a player stopped or taken over by
game code, chunk starts signalled as the mixer reaches them), the turn table's handling of a
cancel that crosses a barge-in, the `priority` option, the microphone resampler (a box filter
compared with a reference, cut anywhere, tones, clipping; test/unit/mic_checks.gd) and the
refusal of surround output for voice input. The run also prints the bytes the codec writes:
they must be the ones bridge_protocol/PROTOCOL.md shows. Godot: tests/support/godot.py
(NPC_VOICE_GODOT).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.godot import PROJECT, GodotProcess, GodotResult, godot  # noqa: F401 (fixture)

PROTOCOL_MD = Path(__file__).resolve().parents[1] / "bridge_protocol" / "PROTOCOL.md"
CODEC_MARK = "NPCV_CODEC "  # godot_addon/test/unit/zmtp_checks.gd MARK
HEX_BYTE = re.compile(r"[0-9a-f]{2}")
REPEAT = re.compile(r"x(\d+)")  # `00 x16`: 16 bytes 00


@pytest.fixture(scope="module")
def unit_run(godot: str) -> GodotResult:  # noqa: F811
    return GodotProcess(godot, ["--headless", "--path", str(PROJECT), "-s",
                                "res://test/run_tests.gd"]).finish(120)


def test_gdscript_unit_tests_pass_in_godot(unit_run: GodotResult) -> None:
    assert unit_run.returncode == 0, unit_run.output
    match = re.search(r"(\d+) checks, (\d+) failures", unit_run.output)
    assert match and match.group(2) == "0" and int(match.group(1)) >= 100, unit_run.output
    unit_run.assert_clean()


def exchange_bytes(label: str) -> bytes:
    """The bytes shown by the entry of PROTOCOL.md section 4 (the annotated exchange) whose
    text contains `label`: an entry is a `C:` or `D:` line with its continuation lines, its
    bytes the hex pairs up to its first other token."""
    text = PROTOCOL_MD.read_text("utf-8")
    section = text[text.index("## 4."):]
    block = section.split("```")[1]
    entries: list[str] = []
    for line in block.splitlines():
        if line.startswith(("C: ", "D: ")):
            entries.append(line[3:])
        elif entries:
            entries[-1] += "\n" + line
    found = [entry for entry in entries if label in entry]
    assert len(found) == 1, f"{label!r} is in {len(found)} entries of PROTOCOL.md section 4"
    data = bytearray()
    for token in found[0].split():
        repeat = REPEAT.fullmatch(token)
        if HEX_BYTE.fullmatch(token):
            data.append(int(token, 16))
        elif repeat and data:
            data.extend([data[-1]] * (int(repeat.group(1)) - 1))
        else:
            break
    return bytes(data)


def spec_block_after(label: str) -> bytes:
    """The hex code block that PROTOCOL.md shows right after `label`."""
    text = PROTOCOL_MD.read_text("utf-8")
    match = re.search(r"```\s*\n((?:[0-9a-f]{2} )+[0-9a-f]{2})", text[text.index(label):])
    assert match, label
    return bytes.fromhex(match.group(1))


def test_codec_bytes_are_the_ones_protocol_md_shows(unit_run: GodotResult) -> None:
    line = next((x for x in unit_run.lines if x.startswith(CODEC_MARK)), None)
    assert line is not None, unit_run.tail()
    codec = json.loads(line[len(CODEC_MARK):])
    greeting = bytes.fromhex(codec["greeting"])
    assert greeting == exchange_bytes("greeting: 3.1") and len(greeting) == 64
    dealer_ready = bytes.fromhex(codec["dealer_ready"])
    assert dealer_ready == exchange_bytes("READY Socket-Type=DEALER")
    assert dealer_ready == spec_block_after("The client's READY carries")
    # Bytes of the daemon, and what the codec reads from them.
    assert bytes.fromhex(codec["libzmq_greeting"]) == exchange_bytes("greeting (libzmq")
    assert codec["libzmq_greeting_problem"] == ""
    assert bytes.fromhex(codec["router_ready"]) == exchange_bytes("READY Socket-Type=ROUTER")
    assert codec["router_ready_properties"] == {"Socket-Type": "ROUTER", "Identity": ""}
    # Heartbeats (sections 2.4 and 4).
    assert bytes.fromhex(codec["ping_ttl_200"]) == exchange_bytes("PING, TTL 0x00c8")
    pong = bytes.fromhex(codec["pong"])
    assert pong == exchange_bytes("PONG (the client must answer)")
    empty_pong = re.search(r"the PONG is `([0-9a-f ]+)`", PROTOCOL_MD.read_text("utf-8"))
    assert empty_pong and pong == bytes.fromhex(empty_pong.group(1))
    assert bytes.fromhex(codec["pong_ctx"]) == bytes.fromhex("04 08 04") + b"PONGctx"
    # Frames: short up to 255 bytes, long above; flags 00 last, 01 MORE, 02 long, 03 long MORE.
    headers = {size: bytes.fromhex(header) for size, header in codec["frame_headers"].items()}
    assert headers["44"] == exchange_bytes("last frame, short, 44 bytes")
    assert headers["115+"] == exchange_bytes("header frame: MORE, short (115 bytes)")
    assert headers["565"] == exchange_bytes("u64 BE 0x235 = 565")
    assert headers["2204"] == exchange_bytes("0x89c = 2204 bytes")[:9]
    assert headers["255"] == bytes.fromhex("00 ff")
    assert headers["256+"] == b"\x03" + (256).to_bytes(8, "big")

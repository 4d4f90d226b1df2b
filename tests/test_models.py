"""Model management: `models list|fetch`, the model cache, checksums; never the network."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.model_fetch import FetchError, _already_verified, _verify
from daemon.models import ModelNotFoundError, hub_model, resolve_llm

UNREACHABLE_HUB = "http://127.0.0.1:9"  # the discard port on loopback: connection refused


def npc_voice(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process with an isolated model cache and hub home."""
    child_env = {key: value for key, value in os.environ.items()
                 if not key.startswith(("HF_", "HUGGING"))}
    child_env |= {"NPC_VOICE_MODELS": str(tmp_path / "models"), "HF_HOME": str(tmp_path / "hf"),
                  "HF_ENDPOINT": UNREACHABLE_HUB} | env
    return subprocess.run([sys.executable, "-m", "daemon", *args], capture_output=True,
                          text=True, env=child_env, timeout=120)


def test_models_list_shows_every_model_with_its_licence(tmp_path: Path) -> None:
    for args in (("models",), ("models", "list")):
        result = npc_voice(*args, tmp_path=tmp_path)
        assert result.returncode == 0, result.stderr
        lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
        assert "Apache-2.0" in lines["qwen2.5-1.5b"] and "not fetched" in lines["qwen2.5-1.5b"]
        assert "Apache-2.0" in lines["qwen2.5-14b"]
        assert "Coqui Public Model License" in lines["xtts-v2"]
        assert "NON-COMMERCIAL" in lines["xtts-v2"]
        assert "Apache-2.0" in lines["smollm2"] and "bundled" in lines["smollm2"]
        assert str(tmp_path / "models") in result.stdout


def test_models_list_shows_what_was_fetched(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "qwen2.5-14b"
    folder.mkdir(parents=True)
    (folder / "Qwen2.5-14B-Instruct-Q6_K.gguf").write_bytes(b"GGUF")
    result = npc_voice("models", tmp_path=tmp_path)
    line = next(line for line in result.stdout.splitlines() if line.startswith("qwen2.5-14b"))
    assert "fetched: q6_k" in line


def one_sentence_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_fetch_without_network_fails_with_one_clear_sentence(tmp_path: Path) -> None:
    message = one_sentence_error(npc_voice("models", "fetch", "qwen2.5-1.5b", tmp_path=tmp_path))
    assert "cannot reach the Hugging Face Hub at http://127.0.0.1:9" in message
    assert "qwen2.5-1.5b" in message
    assert not (tmp_path / "models").exists(), "nothing is written when nothing was fetched"


def test_fetch_in_offline_mode_says_so(tmp_path: Path) -> None:
    message = one_sentence_error(npc_voice("models", "fetch", "xtts-v2", tmp_path=tmp_path,
                                           HF_HUB_OFFLINE="1"))
    assert "offline mode" in message and "HF_HUB_OFFLINE" in message


def test_fetch_of_an_unknown_model_names_the_known_ones(tmp_path: Path) -> None:
    message = one_sentence_error(npc_voice("models", "fetch", "gpt-5", tmp_path=tmp_path))
    assert "qwen2.5-1.5b" in message and "xtts-v2" in message
    message = one_sentence_error(npc_voice("models", "fetch", "qwen2.5-14b:q1", tmp_path=tmp_path))
    assert "q4_k_m" in message


def test_the_daemon_names_the_fetch_command_for_a_missing_model(tmp_path: Path) -> None:
    result = npc_voice("serve", "--llm-model", "qwen2.5-1.5b", "--port", "0", tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "run `npc-voice models fetch qwen2.5-1.5b`" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_fetched_model_resolves_to_the_cached_file(tmp_path: Path) -> None:
    folder = tmp_path / "qwen2.5-1.5b"
    with pytest.raises(ModelNotFoundError, match="npc-voice models fetch qwen2.5-1.5b`"):
        resolve_llm("qwen2.5-1.5b", tmp_path)
    folder.mkdir()
    q8 = folder / "Qwen2.5-1.5B-Instruct-Q8_0.gguf"
    q8.write_bytes(b"GGUF")
    # No quantisation named: the default one if fetched, else any fetched one.
    assert resolve_llm("qwen2.5-1.5b", tmp_path) == q8
    q4 = folder / "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf"
    q4.write_bytes(b"GGUF")
    assert resolve_llm("qwen2.5-1.5b", tmp_path) == q4
    assert resolve_llm("qwen2.5-1.5b:q8_0", tmp_path) == q8
    with pytest.raises(ModelNotFoundError, match="fetch qwen2.5-1.5b:q6_k`"):
        resolve_llm("qwen2.5-1.5b:q6_k", tmp_path)
    with pytest.raises(ModelNotFoundError, match="not the bundled 'smollm2'"):
        resolve_llm("no-such-model", tmp_path)


def test_hub_names_carry_an_optional_quantisation() -> None:
    model, variant = hub_model("qwen2.5-14b")
    assert (model.repo_id, variant) == ("bartowski/Qwen2.5-14B-Instruct-GGUF", "q4_k_m")
    assert model.variants["q8_0"] == ("Qwen2.5-14B-Instruct-Q8_0.gguf",)
    assert hub_model("xtts-v2")[0].licence.startswith("Coqui Public Model License")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_downloads_are_verified_against_the_hub_checksums(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights" * 1000)
    good = (hashlib.sha256(weights.read_bytes()).hexdigest(), "lfs-pointer-oid", None)
    _verify(weights, good, progress=False)
    assert _already_verified(weights, good), "a verified file is not fetched again"
    assert not _already_verified(weights, ("0" * 64, "lfs-pointer-oid", None))

    config = tmp_path / "config.json"
    config.write_bytes(b'{"model": "xtts"}')
    _verify(config, (None, git_blob_id(config.read_bytes()), None), progress=False)

    with pytest.raises(FetchError, match="does not match the hub's SHA-256"):
        _verify(weights, ("0" * 64, "lfs-pointer-oid", None), progress=False)
    assert not weights.exists(), "a corrupt download is deleted"
    config.write_bytes(b'{"model": "tampered"}')
    with pytest.raises(FetchError, match="git blob id"):
        _verify(config, (None, git_blob_id(b'{"model": "xtts"}'), None), progress=False)


def test_a_pinned_checksum_is_checked_too(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights")
    sha = hashlib.sha256(b"weights").hexdigest()
    with pytest.raises(FetchError, match="pinned SHA-256"):
        _verify(weights, (sha, "oid", "f" * 64), progress=False)

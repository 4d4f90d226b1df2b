"""One LLM tier served by an OpenAI-compatible HTTP server, streamed token by token.

The server may be llama.cpp's `llama-server` (started by the daemon, see
`server_process`, or running elsewhere), vLLM, Ollama or LM Studio: the daemon speaks
`POST {url}/chat/completions` with `stream: true` (server-sent events), the one API they
all share. Batching many NPCs' turns into one decode step is then the server's job
(llama-server and vLLM do continuous batching), which is why this backend, not the
in-process one, serves many NPCs at once.

What the daemon does for the server's prompt cache: every prompt is the NPC's persona,
then its history, then the new line, appended to and never rewritten
(`daemon.llm.conversation`), so the prefix is byte-stable; `cache_prompt` asks
llama-server to reuse it (other servers ignore the field, or cache prefixes anyway).
llama-server also keeps idle conversations' KV in its RAM prompt cache (`--cache-ram`)
and gives each request the slot whose cache matches best, which serves many more NPCs
than it has slots without a full re-prefill.

A two-tier reply's continuation sends the opener as the last (assistant) message:
llama-server continues an assistant message it is given; vLLM needs
`continue_final_message`, which is sent too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from daemon.config import LlmConfig
from daemon.llm.admission import SlotGate
from daemon.llm.base import (
    ChatMessage,
    OpenerSource,
    PromptTooLong,
    ReplyDelta,
    ReplyEvent,
    ReplyStarted,
    ReplyStats,
)
from daemon.priorities import AMBIENT, NORMAL

_LOGGER = logging.getLogger(__name__)


class LlmServerError(RuntimeError):
    """The LLM server could not be reached, answered with an error, or went silent."""


_CONTEXT_ERRORS = ("exceed_context_size_error", "context_length_exceeded")
"""The error types llama-server and OpenAI's API give a prompt over the context."""


def _raise_if_context_error(detail: str, url: str) -> None:
    """Raise `PromptTooLong` if the server's 400 answer says the prompt is too long.

    llama-server's body: {"error": {"type": "exceed_context_size_error",
    "n_prompt_tokens": ..., "n_ctx": ...}}; OpenAI's has `code: context_length_exceeded`.
    """
    if not any(kind in detail for kind in _CONTEXT_ERRORS):
        return
    try:  # the counts only inform the message: 0 where the body does not give them
        error = json.loads(detail)["error"]
        prompt_tokens, context_tokens = int(error["n_prompt_tokens"]), int(error["n_ctx"])
    except (ValueError, LookupError, TypeError):  # cut at 300 characters, or OpenAI's
        prompt_tokens, context_tokens = 0, 0
    raise PromptTooLong(prompt_tokens, context_tokens, 0,
                        f"the LLM server at {url} refused the prompt: it does not fit "
                        f"the model's context ({detail})")


class OpenAiTier:
    """A `TierEngine` over an OpenAI-compatible server.

    Args:
      url: Base URL of the API, e.g. "http://127.0.0.1:8080/v1".
      model: The `model` field of requests.
      config: Sampling, reply cap, slots (`instances`) and timeouts.
      api_key: Sent as a bearer token ("" = none).
    """

    def __init__(self, url: str, model: str, config: LlmConfig, api_key: str = "") -> None:
        self.url = url.rstrip("/")
        self._model = model
        self._config = config
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(connect=config.connect_timeout_ms / 1000.0,
                                read=config.read_timeout_ms / 1000.0, write=10.0, pool=None)
        limits = httpx.Limits(max_connections=config.instances + 4,
                              max_keepalive_connections=config.instances + 4)
        self._client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout,
                                         limits=limits)
        # One request per server slot; ambient turns never take the last free one.
        self._gate = SlotGate(config.instances, reserve=1)
        self._closing: asyncio.Task[None] | None = None

    def _body(self, messages: list[ChatMessage], max_tokens: int) -> dict[str, object]:
        config = self._config
        body: dict[str, object] = {
            "model": self._model, "messages": messages, "stream": True,
            "max_tokens": max_tokens, "temperature": config.temperature,
            "top_p": config.top_p, "stream_options": {"include_usage": True},
            # llama-server's own fields (others ignore them):
            "cache_prompt": True, "top_k": config.top_k,
            "repeat_penalty": config.repeat_penalty,
        }
        if config.seed >= 0:
            body["seed"] = config.seed
        return body

    async def reply(
        self,
        key: str,
        messages: list[ChatMessage],
        stop: threading.Event,
        persona_key: str | None = None,
        max_tokens: int | None = None,
        opener: OpenerSource | None = None,
        priority: int = NORMAL,
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Stream the server's reply (see `TierEngine.reply`).

        Closing the iterator, or `stop`, closes the HTTP stream: llama-server and vLLM
        stop generating when their client goes.

        Raises:
          LlmServerError: the server is unreachable, answered an error, or went silent
            for `read_timeout_ms`; the message names the URL.
          PromptTooLong: the server refused the prompt as longer than its context.
        """
        async with self._gate.place(priority):
            yield ReplyStarted()
            body = self._body(messages, max_tokens or self._config.max_reply_tokens)
            if opener is not None:
                opener_text = await asyncio.to_thread(opener, stop)
                if opener_text is None:
                    yield ReplyStats(0, 0, 0, "cancelled")
                    return
                body["messages"] = [*messages, {"role": "assistant", "content": opener_text}]
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
            async for event in self._stream(body, stop):
                yield event

    async def _stream(self, body: dict[str, object], stop: threading.Event
                      ) -> AsyncGenerator[ReplyEvent, None]:
        reply_tokens, finish_reason = 0, "cancelled"
        usage: dict[str, Any] = {}
        try:
            async with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    detail = (await response.aread()).decode("utf-8", "replace")[:300]
                    if response.status_code == 400:
                        _raise_if_context_error(detail, self.url)
                    raise LlmServerError(f"the LLM server at {self.url} answered "
                                         f"{response.status_code}: {detail}")
                async for line in response.aiter_lines():
                    if stop.is_set():
                        break
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            reply_tokens += 1
                            yield ReplyDelta(text)
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
        except httpx.ConnectError as exc:
            raise LlmServerError(f"the LLM server at {self.url} is not reachable ({exc}); "
                                 "is it running?") from None
        except httpx.TimeoutException:
            raise LlmServerError(f"the LLM server at {self.url} sent nothing for "
                                 f"{self._config.read_timeout_ms} ms") from None
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise LlmServerError(f"the LLM server at {self.url} failed: "
                                 f"{type(exc).__name__}: {exc}") from None
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        reply_tokens = int(usage.get("completion_tokens") or reply_tokens)
        yield ReplyStats(prompt_tokens, max(prompt_tokens - cached, 0), reply_tokens,
                         finish_reason)

    async def prefill(self, personas: dict[str, list[ChatMessage]]) -> None:
        """Have the server evaluate (and cache) each persona's prompt once.

        Raises:
          PromptTooLong: the server refused a persona as longer than its context (named
            `npcs.<id>.persona`).
        """
        for key, messages in personas.items():
            try:
                await self.prefill_one(key, messages)
            except PromptTooLong as error:
                raise error.about(f"npcs.{key}.persona") from None

    async def prefill_one(self, key: str, messages: list[ChatMessage]) -> None:
        """A one-token request for `messages`, so the server caches its prompt.

        Raises:
          PromptTooLong: the server refused the prompt as longer than its context (other
            failures are logged: a prefill only saves time).
        """
        body = self._body(messages, 1)
        body["stream"] = False
        body.pop("stream_options")
        async with self._gate.place(AMBIENT):
            try:
                response = await self._client.post("/chat/completions", json=body)
                if response.status_code == 400:
                    _raise_if_context_error(response.text[:300], self.url)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                _LOGGER.warning("prefill of %s on %s failed: %s", key, self.url, exc)

    async def prefill_typing(self, key: str, messages: list[ChatMessage],
                             persona_key: str | None = None) -> None:
        """Have the server cache the prompt up to the line being typed (last message).

        The server's template closes the partial line, so its cached prompt diverges
        from the final one only there: the final request re-evaluates the line's last
        words and what follows them, not the history before it.
        """
        await self.prefill_one(key, messages)

    def forget(self, keys: list[str]) -> None:
        """Nothing to do: the server's prompt cache ages out by itself."""

    def close(self) -> None:
        """Close the HTTP connections (on the event loop, if it still runs)."""
        try:
            self._closing = asyncio.get_running_loop().create_task(self._client.aclose())
        except RuntimeError:
            pass  # no loop any more: the process is ending


def api_key(config: LlmConfig) -> str:
    """The API key named by `api_key_env` ("" when none is configured or set)."""
    return os.environ.get(config.api_key_env, "") if config.api_key_env else ""

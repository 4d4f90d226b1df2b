"""Priority ranks of turns: which goes first when several compete for the engines.

Leaf module: the wire says "ambient", "normal" or "high" (`bridge_protocol.messages.
Priority`); inside, ranks are integers, higher first, from the server down to the LLM
admission and the TTS engine threads.
"""

from __future__ import annotations

AMBIENT, NORMAL, HIGH = 0, 1, 2

_RANKS = {"ambient": AMBIENT, "normal": NORMAL, "high": HIGH}


def rank(priority: str) -> int:
    """The rank of a protocol priority name ("ambient", "normal" or "high")."""
    return _RANKS[priority]

"""English player lines the voice tests speak (Piper) and expect to hear back."""

from __future__ import annotations

PLAYER_LINES = [
    "The dragon sleeps under the old bridge, so walk quietly now.",
    "Can you repair my sword before nightfall?",
    "I need a room for two nights.",
    "Where can I find the captain of the guard?",
    "How much does a loaf of bread cost?",
    "Tell me about the old temple in the hills.",
    "My horse lost a shoe on the road.",
    "Have you seen a man in a red cloak?",
    "I would like to buy some arrows.",
    "What is the fastest way to the harbor?",
    "Thank you for your help, my friend.",
]
"""Finished sentences: each ends a turn, and together they make the WER set."""

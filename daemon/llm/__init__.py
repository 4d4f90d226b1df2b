"""The LLM stage: llama.cpp contexts, per-NPC KV states and conversations."""

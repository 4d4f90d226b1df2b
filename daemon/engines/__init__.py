"""Loading the engines (LLM, TTS, ASR) and the owner thread each one runs on."""

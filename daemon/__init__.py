"""npc-voice-bridge daemon: player line -> llama.cpp -> streaming TTS -> PCM blocks."""

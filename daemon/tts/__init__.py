"""Text-to-speech engines behind one small interface (`daemon.tts.base.TtsEngine`)."""

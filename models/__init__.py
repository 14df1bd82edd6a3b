"""Neural models and the code that blocks: Whisper, the streaming recognizer, VAD, resolution."""

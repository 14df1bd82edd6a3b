"""The neural models and the code that runs them (blocking, off the event loop): Whisper's
two passes and their scheduler (local or remote workers), the streaming recognizer, revision,
Silero VAD, model resolution; the MiniLM text encoder with its tuned branches and the intent
and sentiment heads (and their training); the GE2E speaker encoder of mono calls."""

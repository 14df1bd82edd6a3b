"""Pure audio code: codecs, resampling, wire protocols, the VAD state machine (no asyncio)."""

"""Pure audio code: codecs, resampling, wire protocols and the VAD state machine (no asyncio, no models)."""

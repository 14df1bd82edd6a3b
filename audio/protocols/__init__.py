"""Wire protocols as sans-I/O state machines: messages in, typed events out."""

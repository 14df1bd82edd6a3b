"""The HTTP and websocket edge, and the only code that imports Starlette: the native ingest
endpoint, the Genesys AudioHook and Twilio endpoints, the screens' event streams, the REST API,
authentication (tokens, call links, origins) and rate limits. `server.py` mounts it."""

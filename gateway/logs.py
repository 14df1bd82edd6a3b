"""No secret in a log line: credentials that travel in URLs are redacted before logging.

Browsers cannot set headers on a websocket, so screens, call links, ingest keys and Twilio
tokens may come as `?token=…`; uvicorn logs every websocket's path with its query string (at
INFO, the default level), right or wrong. `RedactSecrets` is a logging filter that rewrites
the value of every credential-like query parameter (`token`, `key`, `secret`, `signature`,
`password`, …) in a record's message and arguments to `[redacted]`; `server.py` puts it on
every handler that writes log lines.
"""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = (
    "token",
    "access_token",
    "key",
    "api_key",
    "apikey",
    "secret",
    "signature",
    "sig",
    "password",
    "auth",
)
_QUERY_SECRET = re.compile(
    r"([?&;](?:" + "|".join(SECRET_PARAMS) + r")=)[^&;#\s\"']*", re.IGNORECASE
)


def redact(text: str) -> str:
    """`text` with the value of every credential-like query parameter replaced."""
    return _QUERY_SECRET.sub(r"\1[redacted]", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def install() -> None:
    """Put the filter on every handler that writes log lines: the root logger's (callcue's
    own loggers propagate there) and uvicorn's (which do not propagate). A handler's filter
    sees every record it writes, whichever logger it came from."""
    for name in ("", "uvicorn", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(RedactSecrets())

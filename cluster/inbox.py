"""Feedback across nodes: a screen here on a call another node runs sends its feedback to that
node's inbox stream (`PREFIX:inbox:NODE`), and waits for the answer on a reply list."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from cluster.link import RedisLink

log = logging.getLogger("callcue.cluster")

FEEDBACK_TIMEOUT = 3.0


class Inbox:
    def __init__(self, link: RedisLink) -> None:
        self.link = link

    async def forward(self, call_id: str, message: dict[str, Any]) -> str | None:
        """Feedback from a screen here on a call another node runs: handed to that node;
        None when it took it, else what is wrong (as the node that runs it would say)."""
        link = self.link
        try:
            raw = await link.redis.hget(link.calls_key, call_id)
            if raw is None:
                return f"call {call_id} is not live; feedback is taken during the call"
            node = json.loads(raw)["node"]
            reply_key = f"{link.options.prefix}:reply:{uuid.uuid4().hex}"
            await link.redis.xadd(
                link.inbox_key(node),
                {"call_id": call_id, "message": json.dumps(message), "reply": reply_key},
                maxlen=10_000,
                approximate=True,
            )
            answer = await link.redis.blpop([reply_key], timeout=FEEDBACK_TIMEOUT)
        except Exception as exc:
            link.failed("forwarding feedback", exc)
            return "the node running this call cannot be reached right now; try again"
        if answer is None:
            return f"node {node} running call {call_id} did not answer; try again"
        problem = json.loads(answer[1]).get("problem")
        return str(problem) if problem else None

    async def run(self) -> None:
        """Feedback other nodes' screens sent for the calls running here."""
        link = self.link
        key = link.inbox_key(link.node)
        last = ""
        while True:
            try:
                if not last:  # what is there now was for an earlier process of this name
                    top = await link.redis.xrevrange(key, count=1)
                    last = top[0][0] if top else "0-0"
                reply = await link.redis.xread({key: last}, count=100, block=2000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                link.failed("reading feedback from other nodes", exc)
                await asyncio.sleep(1.0)
                continue
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    await self._take(fields)

    async def _take(self, fields: dict[str, str]) -> None:
        problem = None
        session = self.link.sessions.get(fields.get("call_id", ""))
        if session is None:
            problem = f"call {fields.get('call_id')} is not live; feedback is taken during the call"
        else:
            try:
                session.feedback(json.loads(fields.get("message", "{}")))
            except ValueError as exc:
                problem = str(exc)
        reply_key = fields.get("reply", "")
        if reply_key:
            try:
                pipe = self.link.redis.pipeline(transaction=False)
                pipe.rpush(reply_key, json.dumps({"problem": problem}))
                pipe.expire(reply_key, 30)
                await pipe.execute()
            except Exception as exc:
                self.link.failed("answering feedback", exc)

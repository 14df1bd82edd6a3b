"""The QA REST API under /v1 and its OpenAPI description (served at /openapi.json)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from gateway.auth import ADMIN, READ, REVIEW, Authorizer, Denied, Principal
from store.calls import CallQuery, CallStore, normal_agent, unavailable_errors
from store.exports import FORMATS, analytics, export, summary

Handler = Callable[[Request], Awaitable[Response]]
DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9:.]+Z?)?$"
DATE = re.compile(DATE_PATTERN.removesuffix("$") + r"\Z")
SENTIMENTS = ("negative", "neutral", "positive")
UNAVAILABLE = unavailable_errors()
log = logging.getLogger("callcue.api")


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def guarded(
    authorizer: Authorizer, allowed: frozenset[str], what: str
) -> Callable[[Callable[[Request, Principal], Awaitable[Response]]], Handler]:
    """Check the caller's token and turn BadRequest/Denied into JSON errors."""

    def wrap(handler: Callable[[Request, Principal], Awaitable[Response]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                principal = authorizer.check(
                    request.headers,
                    request.query_params,
                    allowed,
                    what,
                    call_id=request.path_params.get("call_id"),
                )
                return await handler(request, principal)
            except Denied as denied:
                return error(denied.status, denied.code, denied.message)
            except BadRequest as bad:
                return error(bad.status, bad.code, bad.message)
            except UNAVAILABLE as exc:
                log.error("%s %s: store unavailable: %s", request.method, request.url.path, exc)
                return error(
                    503, "store_unavailable", "the call store is not answering; try again shortly"
                )

        return endpoint

    return wrap


async def json_body(request: Request) -> Any:
    """The request's JSON body; BadRequest names what is wrong with it."""
    try:
        return await request.json()
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body must be JSON ({exc})") from exc


def not_by_link(principal: Principal, what: str) -> None:
    """A call link opens one call's screen, transcript and summary, nothing of its QA."""
    if principal.call_id is not None:
        raise Denied(
            403,
            "forbidden",
            f"a call link may not {what} (it opens the screen, transcript and summary of its call)",
        )


def _int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"[0-9]{1,10}", raw) or not lo <= int(raw) <= hi:
        raise BadRequest(f"'{name}' must be a whole number from {lo} to {hi}, not {raw!r}")
    return int(raw)


def _bool(request: Request, name: str, yes: str, no: str) -> bool | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    if raw not in (yes, no):
        raise BadRequest(f"'{name}' must be {yes} or {no}, not {raw!r}")
    return raw == yes


def _date(request: Request, name: str) -> str:
    raw = request.query_params.get(name, "")
    if raw and not DATE.match(raw):
        raise BadRequest(f"'{name}' must be a date (2026-11-23) or an ISO time, not {raw!r}")
    return raw


def api_routes(
    store: CallStore,
    authorizer: Authorizer,
    is_live: Callable[[str], bool] = lambda _: False,
    is_revising: Callable[[str], bool] = lambda _: False,
) -> list[Route]:
    def found(call_id: str) -> dict[str, Any]:
        call = store.get_call(call_id)
        if call is None:
            raise BadRequest(f"no stored call with id {call_id!r}", 404, "not_found")
        return call

    @guarded(authorizer, READ, "list calls")
    async def list_calls(request: Request, _: Principal) -> Response:
        sentiment = request.query_params.get("sentiment", "")
        if sentiment and sentiment not in SENTIMENTS:
            raise BadRequest(f"'sentiment' must be one of {', '.join(SENTIMENTS)}")
        query = CallQuery(
            q=request.query_params.get("q", "")[:500],
            date_from=_date(request, "from"),
            date_to=_date(request, "to"),
            agent=request.query_params.get("agent", ""),
            customer=request.query_params.get("customer", ""),
            intent=request.query_params.get("intent", ""),
            category=request.query_params.get("category", ""),
            sentiment=sentiment,
            has_alerts=_bool(request, "alerts", "true", "false"),
            checklist_complete=_bool(request, "checklist", "complete", "incomplete"),
            outcome=request.query_params.get("outcome", ""),
            limit=_int(request, "limit", 50, 1, 200),
            offset=_int(request, "offset", 0, 0, 10_000_000),
        )
        calls, total = await run_in_threadpool(store.search, query)
        following = query.offset + len(calls)
        return JSONResponse(
            {
                "calls": calls,
                "total": total,
                "limit": query.limit,
                "offset": query.offset,
                "next_offset": following if following < total else None,
            }
        )

    @guarded(authorizer, READ, "read calls")
    async def get_call(request: Request, principal: Principal) -> Response:
        call_id = request.path_params["call_id"]
        call = await run_in_threadpool(found, call_id)
        if principal.call_id is None:  # a call link opens the call, not its QA record
            call["recordings"] = sorted(await run_in_threadpool(store.recordings, call_id))
            call["reviews"] = await run_in_threadpool(store.reviews, call_id)
        return JSONResponse(call)

    @guarded(authorizer, READ, "read calls")
    async def transcript(request: Request, _: Principal) -> Response:
        fmt = request.query_params.get("format", "json")
        if fmt not in FORMATS:
            raise BadRequest(f"'format' must be one of {', '.join(FORMATS)}, not {fmt!r}")
        call_id = request.path_params["call_id"]
        call = await run_in_threadpool(found, call_id)
        body = export(call, await run_in_threadpool(store.utterances, call_id), fmt)
        headers = {}
        if fmt != "json":
            headers["content-disposition"] = f'attachment; filename="{call_id}.{fmt}"'
        return Response(body, media_type=FORMATS[fmt], headers=headers)

    @guarded(authorizer, READ, "read calls")
    async def call_summary(request: Request, _: Principal) -> Response:
        call_id = request.path_params["call_id"]
        call = await run_in_threadpool(found, call_id)
        return JSONResponse(summary(call, await run_in_threadpool(store.events, call_id)))

    @guarded(authorizer, READ, "read calls")
    async def call_analytics(request: Request, _: Principal) -> Response:
        call_id = request.path_params["call_id"]
        call = await run_in_threadpool(found, call_id)
        utterances = await run_in_threadpool(store.utterances, call_id)
        events = await run_in_threadpool(store.events, call_id, ["sentiment", "category.matched"])
        return JSONResponse(analytics(call, utterances, events))

    @guarded(authorizer, READ, "read calls")
    async def call_events(request: Request, _: Principal) -> Response:
        call_id = request.path_params["call_id"]
        await run_in_threadpool(found, call_id)
        after = _int(request, "after_seq", 0, 0, 100_000_000)
        types = [t for t in request.query_params.get("types", "").split(",") if t]
        events = await run_in_threadpool(store.events, call_id, types, after)
        return JSONResponse({"call_id": call_id, "events": events})

    @guarded(authorizer, READ, "listen to recordings")
    async def audio(request: Request, principal: Principal) -> Response:
        not_by_link(principal, "listen to recordings")
        call_id, channel = request.path_params["call_id"], request.path_params["channel"]
        await run_in_threadpool(found, call_id)
        if is_live(call_id):
            raise BadRequest(
                f"call {call_id!r} is still being recorded; its audio is served once it ends",
                409,
                "conflict",
            )
        recording = (await run_in_threadpool(store.recordings, call_id)).get(channel)
        exists = recording is not None and await run_in_threadpool(Path(recording["path"]).exists)
        if recording is None or not exists:
            raise BadRequest(
                f"call {call_id!r} has no recording of channel {channel!r} "
                "(recording is off unless CALLCUE_RECORD_AUDIO=true)",
                404,
                "not_found",
            )
        return FileResponse(recording["path"], media_type="audio/wav")

    @guarded(authorizer, REVIEW, "review calls")
    async def add_review(request: Request, principal: Principal) -> Response:
        call_id = request.path_params["call_id"]
        await run_in_threadpool(found, call_id)
        body = await json_body(request)
        scores, comments, reviewer = _review_body(body)
        review = await run_in_threadpool(
            store.add_review,
            call_id,
            reviewer or principal.role,  # never a piece of the token
            scores,
            comments,
        )
        return JSONResponse(review, status_code=201)

    @guarded(authorizer, READ, "read calls")
    async def get_scorecard(request: Request, principal: Principal) -> Response:
        not_by_link(principal, "read QA scorecards")
        call_id = request.path_params["call_id"]
        await run_in_threadpool(found, call_id)
        card = await run_in_threadpool(store.scorecard, call_id)
        if card is None:  # the playbook has no scorecard, or the call has not ended
            card = {"automatic_score": None, "score": None, "items": []}
        return JSONResponse({"call_id": call_id, "scored": bool(card["items"]), **card})

    @guarded(authorizer, REVIEW, "review calls")
    async def override_scorecard(request: Request, principal: Principal) -> Response:
        call_id = request.path_params["call_id"]
        await run_in_threadpool(found, call_id)
        body = await json_body(request)
        if not isinstance(body, dict) or set(body) - {"item", "passed", "note", "reviewer"}:
            raise BadRequest(
                'the body must be {"item": ID, "passed": true|false, "note": "...", '
                '"reviewer": "..."} (note and reviewer optional)'
            )
        item, passed = body.get("item"), body.get("passed")
        note, reviewer = body.get("note", ""), body.get("reviewer", "")
        if not isinstance(item, str) or not item:
            raise BadRequest("'item' must be the id of a scorecard item")
        if not isinstance(passed, bool):
            raise BadRequest("'passed' must be true or false")
        for name, value in (("note", note), ("reviewer", reviewer)):
            if not isinstance(value, str) or len(value) > 2000:
                raise BadRequest(f"'{name}' must be text of at most 2000 characters")
        try:
            card = await run_in_threadpool(
                store.override_score,
                call_id,
                item,
                passed,
                note,
                reviewer or principal.role,  # never a piece of the token
            )
        except KeyError as exc:
            raise BadRequest(str(exc.args[0]), 404, "not_found") from None
        return JSONResponse({"call_id": call_id, **card})

    @guarded(authorizer, READ, "wrap up calls")
    async def save_wrapup(request: Request, principal: Principal) -> Response:
        call_id = request.path_params["call_id"]
        await run_in_threadpool(found, call_id)
        if is_live(call_id):
            raise BadRequest(
                f"call {call_id!r} is still live: wrap up after it ends", 409, "conflict"
            )
        body = await json_body(request)
        if not isinstance(body, dict) or set(body) - {"disposition", "note", "by"}:
            raise BadRequest('the body must be {"disposition": ID, "note": "...", "by": "..."}')
        disposition, note, by = body.get("disposition"), body.get("note", ""), body.get("by", "")
        if not isinstance(disposition, str) or not disposition:
            raise BadRequest("'disposition' must be the id of one of the call's dispositions")
        if not isinstance(note, str) or len(note) > 10_000:
            raise BadRequest("'note' must be text of at most 10,000 characters")
        if not isinstance(by, str) or len(by) > 200:
            raise BadRequest("'by' must be text of at most 200 characters")
        who = by or ("call link" if principal.call_id is not None else principal.role)
        try:
            saved = await run_in_threadpool(store.save_wrapup, call_id, disposition, note, who)
        except KeyError as exc:
            raise BadRequest(str(exc.args[0]), 404, "not_found") from None
        return JSONResponse({"call_id": call_id, **saved})

    @guarded(authorizer, REVIEW, "read agent statistics")
    async def agent_stats(request: Request, principal: Principal) -> Response:
        not_by_link(principal, "read agent statistics")
        agents = await run_in_threadpool(store.agents, _date(request, "from"), _date(request, "to"))
        return JSONResponse({"agents": agents})

    @guarded(authorizer, ADMIN, "manage voice prints")
    async def voice_print(request: Request, _: Principal) -> Response:
        agent = normal_agent(request.path_params["agent"])  # (as calls keep it)
        if request.method == "DELETE":  # the agent withdrew consent
            if not await run_in_threadpool(store.forget_voice_print, agent):
                raise BadRequest(f"no voice print is kept for agent {agent!r}", 404, "not_found")
            return Response(status_code=204)
        kept = await run_in_threadpool(store.voice_print, agent)
        if kept is None:
            raise BadRequest(f"no voice print is kept for agent {agent!r}", 404, "not_found")
        return JSONResponse({"agent": agent, "prints": kept[1]})

    @guarded(authorizer, READ, "read calls")
    async def list_reviews(request: Request, principal: Principal) -> Response:
        not_by_link(principal, "read QA reviews")
        call_id = request.path_params["call_id"]
        await run_in_threadpool(found, call_id)
        return JSONResponse({"reviews": await run_in_threadpool(store.reviews, call_id)})

    @guarded(authorizer, ADMIN, "delete calls")
    async def delete_call(request: Request, _: Principal) -> Response:
        call_id = request.path_params["call_id"]
        call = await run_in_threadpool(found, call_id)
        if call["outcome"] == "in_progress" or is_live(call_id):
            raise BadRequest(f"call {call_id!r} is still in progress", 409, "conflict")
        if is_revising(call_id):
            raise BadRequest(
                f"call {call_id!r} is still being revised (its transcript is decoded again "
                "after it ends); delete it once that is done",
                409,
                "conflict",
            )
        await run_in_threadpool(store.delete_call, call_id)
        return Response(status_code=204)

    @guarded(authorizer, ADMIN, "purge calls")
    async def purge(request: Request, _: Principal) -> Response:
        days = _int(request, "days", -1, 0, 36500)
        if days < 0:
            raise BadRequest("'days' is required: calls older than this many days are deleted")
        deleted = await run_in_threadpool(
            store.purge, days, keep=lambda cid: is_live(cid) or is_revising(cid)
        )
        return JSONResponse({"deleted": deleted, "days": days})

    @guarded(authorizer, READ, "make call links")
    async def make_link(request: Request, principal: Principal) -> Response:
        if principal.call_id is not None:
            raise Denied(403, "forbidden", "a call link cannot make further links")
        call_id = request.path_params["call_id"]
        if not is_live(call_id):
            await run_in_threadpool(found, call_id)
        token, expires = authorizer.links.make(call_id)
        return JSONResponse(
            {
                "call_id": call_id,
                "token": token,
                "path": f"/agent/{quote(call_id, safe='')}?token={token}",
                "expires_at": expires,
            },
            status_code=201,
        )

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_spec())

    return [
        Route("/openapi.json", openapi),
        Route("/v1/calls", list_calls),
        Route("/v1/calls/{call_id}", get_call),
        Route("/v1/calls/{call_id}", delete_call, methods=["DELETE"]),
        Route("/v1/calls/{call_id}/transcript", transcript),
        Route("/v1/calls/{call_id}/summary", call_summary),
        Route("/v1/calls/{call_id}/analytics", call_analytics),
        Route("/v1/calls/{call_id}/events", call_events),
        Route("/v1/calls/{call_id}/audio/{channel}", audio),
        Route("/v1/calls/{call_id}/reviews", list_reviews),
        Route("/v1/calls/{call_id}/scorecard", get_scorecard),
        Route("/v1/calls/{call_id}/scorecard", override_scorecard, methods=["POST"]),
        Route("/v1/calls/{call_id}/wrapup", save_wrapup, methods=["POST"]),
        Route("/v1/agents", agent_stats),
        Route("/v1/agents/{agent}/voice", voice_print, methods=["GET", "DELETE"]),
        Route("/v1/calls/{call_id}/reviews", add_review, methods=["POST"]),
        Route("/v1/calls/{call_id}/link", make_link, methods=["POST"]),
        Route("/v1/admin/purge", purge, methods=["POST"]),
    ]


def _review_body(body: Any) -> tuple[dict[str, float], list[dict[str, Any]], str]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with 'scores' and 'comments'")
    unknown = set(body) - {"scores", "comments", "reviewer"}
    if unknown:
        raise BadRequest(f"unknown fields {sorted(unknown)} (fields: scores, comments, reviewer)")
    scores = body.get("scores", {})
    if not isinstance(scores, dict) or not scores:
        raise BadRequest("'scores' must be an object of scorecard item → score (0 to 5)")
    clean: dict[str, float] = {}
    for item, value in scores.items():
        if not isinstance(item, str) or not 0 < len(item) <= 64:
            raise BadRequest("scorecard item names must be 1–64 characters")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 5:
            raise BadRequest(f"score of {item!r} must be a number from 0 to 5")
        clean[item] = float(value)
    comments = body.get("comments", [])
    if not isinstance(comments, list) or len(comments) > 500:
        raise BadRequest("'comments' must be a list (at most 500)")
    out = []
    for i, comment in enumerate(comments):
        if not isinstance(comment, dict) or not isinstance(comment.get("text"), str):
            raise BadRequest(f"comments[{i}] must be an object with 'text'")
        utterance = comment.get("utterance")
        if utterance is not None and (
            isinstance(utterance, bool) or not isinstance(utterance, int)
        ):
            raise BadRequest(f"comments[{i}].utterance must be a whole number")
        out.append(
            {
                "text": comment["text"][:4000],
                "utterance": utterance,
                "channel": str(comment.get("channel") or ""),
            }
        )
    reviewer = body.get("reviewer", "")
    if not isinstance(reviewer, str) or len(reviewer) > 100:
        raise BadRequest("'reviewer' must be a string of at most 100 characters")
    return clean, out, reviewer


def openapi_spec() -> dict[str, Any]:
    call_id = {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"}}
    agent = {"name": "agent", "in": "path", "required": True, "schema": {"type": "string"}}
    err = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    auth = {"401": err, "403": err, "429": err, "503": err}

    def q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": description,
        }

    def body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
        """A JSON object request body with exactly these properties."""
        schema = {
            "type": "object",
            "required": required,
            "additionalProperties": False,
            "properties": properties,
        }
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    date = {"type": "string", "pattern": DATE_PATTERN}
    json_ok = {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "callcue QA API",
            "version": "1",
            "description": "Stored calls: search, transcripts, summaries, QA reviews. "
            "Authorization: Bearer TOKEN (roles agent, supervisor, qa, admin).",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/calls": {
                "get": {
                    "summary": "List and search stored calls, newest first",
                    "parameters": [
                        q("q", {"type": "string"}, "full-text search in utterances"),
                        q("from", date, "started on or after (date or ISO time)"),
                        q("to", date, "started on or before"),
                        q("agent", {"type": "string"}, "agent name or id"),
                        q("customer", {"type": "string"}, "customer id, or part of the name"),
                        q("intent", {"type": "string"}, "an intent seen in the call"),
                        q("category", {"type": "string"}, "a playbook category it matched"),
                        q(
                            "sentiment",
                            {"type": "string", "enum": list(SENTIMENTS)},
                            "the customer's sentiment at the end of the call",
                        ),
                        q(
                            "alerts",
                            {"type": "string", "enum": ["true", "false"]},
                            "calls with / without alerts",
                        ),
                        q(
                            "checklist",
                            {"type": "string", "enum": ["complete", "incomplete"]},
                            "checklist result",
                        ),
                        q(
                            "outcome",
                            {"type": "string"},
                            "stop, disconnect, error, shutdown, interrupted, in_progress",
                        ),
                        q("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "page size"),
                        q(
                            "offset",
                            {"type": "integer", "minimum": 0, "maximum": 10_000_000},
                            "page start",
                        ),
                    ],
                    "responses": {"200": json_ok, "400": err, **auth},
                }
            },
            "/v1/calls/{call_id}": {
                "get": {
                    "summary": "One call",
                    "parameters": [call_id],
                    "responses": {"200": json_ok, "404": err, **auth},
                },
                "delete": {
                    "summary": "Delete a call and its audio (admin)",
                    "parameters": [call_id],
                    "responses": {
                        "204": {"description": "deleted"},
                        "404": err,
                        "409": err,
                        **auth,
                    },
                },
            },
            "/v1/calls/{call_id}/transcript": {
                "get": {
                    "summary": "Transcript export",
                    "parameters": [
                        call_id,
                        q("format", {"type": "string", "enum": list(FORMATS)}, "format"),
                    ],
                    "responses": {
                        "200": {
                            "description": "the transcript",
                            "content": {
                                "application/json": {"schema": {"type": "object"}},
                                **{
                                    t: {"schema": {"type": "string"}}
                                    for t in (
                                        "text/plain",
                                        "text/vtt",
                                        "application/x-subrip",
                                        "text/csv",
                                    )
                                },
                            },
                        },
                        "400": err,
                        "404": err,
                        **auth,
                    },
                }
            },
            "/v1/calls/{call_id}/link": {
                "post": {
                    "summary": "A link that opens this call's agent screen (and only this "
                    "call) until it expires (CALLCUE_LINK_TTL)",
                    "parameters": [call_id],
                    "responses": {
                        "201": {
                            "description": "the link",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["call_id", "token", "path", "expires_at"],
                                        "properties": {
                                            "call_id": {"type": "string"},
                                            "token": {"type": "string"},
                                            "path": {"type": "string"},
                                            "expires_at": {"type": "integer"},
                                        },
                                    }
                                }
                            },
                        },
                        "404": err,
                        **auth,
                    },
                }
            },
            "/v1/calls/{call_id}/summary": {
                "get": {
                    "summary": "Post-call summary",
                    "parameters": [call_id],
                    "responses": {"200": json_ok, "404": err, **auth},
                }
            },
            "/v1/calls/{call_id}/analytics": {
                "get": {
                    "summary": "Call analytics: talk, silence, overtalk, interruptions, pace, "
                    "agent response time, sentiment start and end",
                    "parameters": [call_id],
                    "responses": {"200": json_ok, "404": err, **auth},
                }
            },
            "/v1/calls/{call_id}/events": {
                "get": {
                    "summary": "Stored events of a call",
                    "parameters": [
                        call_id,
                        q(
                            "after_seq",
                            {"type": "integer", "minimum": 0, "maximum": 100_000_000},
                            "after",
                        ),
                        q("types", {"type": "string"}, "comma-separated types"),
                    ],
                    "responses": {"200": json_ok, "400": err, "404": err, **auth},
                }
            },
            "/v1/calls/{call_id}/audio/{channel}": {
                "get": {
                    "summary": "Recording of one channel (WAV)",
                    "parameters": [
                        call_id,
                        {
                            "name": "channel",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "audio",
                            "content": {
                                "audio/wav": {"schema": {"type": "string", "format": "binary"}}
                            },
                        },
                        "404": err,
                        **auth,
                    },
                }
            },
            "/v1/calls/{call_id}/scorecard": {
                "get": {
                    "summary": "The call's scorecard: each item's automatic answer and reason, "
                    "a reviewer's override beside it, the score with and without overrides",
                    "parameters": [call_id],
                    "responses": {"200": json_ok, "404": err, **auth},
                },
                "post": {
                    "summary": "Override one scorecard item (qa, supervisor, admin)",
                    "parameters": [call_id],
                    "requestBody": body(
                        ["item", "passed"],
                        {
                            "item": {"type": "string", "minLength": 1},
                            "passed": {"type": "boolean"},
                            "note": {"type": "string", "maxLength": 2000},
                            "reviewer": {"type": "string", "maxLength": 2000},
                        },
                    ),
                    "responses": {"200": json_ok, "400": err, "404": err, **auth},
                },
            },
            "/v1/calls/{call_id}/wrapup": {
                "post": {
                    "summary": "Accept or edit the call's wrap-up: disposition and note "
                    "(agent, supervisor, qa, admin, the call's link)",
                    "parameters": [call_id],
                    "requestBody": body(
                        ["disposition"],
                        {
                            "disposition": {"type": "string", "minLength": 1},
                            "note": {"type": "string", "maxLength": 10000},
                            "by": {"type": "string", "maxLength": 200},
                        },
                    ),
                    "responses": {"200": json_ok, "400": err, "404": err, "409": err, **auth},
                }
            },
            "/v1/agents": {
                "get": {
                    "summary": "Per agent over a period (qa, supervisor, admin): calls, average "
                    "handle time, talk share, average score, customer sentiment change, "
                    "suggestions used",
                    "parameters": [
                        q("from", date, "calls started on or after (date or ISO time)"),
                        q("to", date, "calls started on or before (date or ISO time)"),
                    ],
                    "responses": {"200": json_ok, "400": err, **auth},
                }
            },
            "/v1/agents/{agent}/voice": {
                "get": {
                    "summary": "Whether a voice print is kept for an agent, and of how many "
                    "1.6 s prints (admin; CALLCUE_VOICE_PRINTS)",
                    "parameters": [agent],
                    "responses": {"200": json_ok, "404": err, **auth},
                },
                "delete": {
                    "summary": "Forget an agent's voice print (admin): consent withdrawn",
                    "parameters": [agent],
                    "responses": {"204": {"description": "deleted"}, "404": err, **auth},
                },
            },
            "/v1/calls/{call_id}/reviews": {
                "get": {
                    "summary": "QA reviews of a call",
                    "parameters": [call_id],
                    "responses": {"200": json_ok, "404": err, **auth},
                },
                "post": {
                    "summary": "Add a QA review (qa, supervisor, admin)",
                    "parameters": [call_id],
                    "requestBody": body(
                        ["scores"],
                        {
                            "scores": {
                                "type": "object",
                                "minProperties": 1,
                                "propertyNames": {"minLength": 1, "maxLength": 64},
                                "additionalProperties": {
                                    "type": "number",
                                    "minimum": 0,
                                    "maximum": 5,
                                },
                            },
                            "comments": {
                                "type": "array",
                                "maxItems": 500,
                                "items": {
                                    "type": "object",
                                    "required": ["text"],
                                    "properties": {
                                        "text": {"type": "string"},
                                        "utterance": {"type": "integer"},
                                        "channel": {"type": "string"},
                                    },
                                },
                            },
                            "reviewer": {"type": "string", "maxLength": 100},
                        },
                    ),
                    "responses": {"201": json_ok, "400": err, "404": err, **auth},
                },
            },
            "/v1/admin/purge": {
                "post": {
                    "summary": "Delete calls older than `days` (admin)",
                    "parameters": [
                        {
                            "name": "days",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 0, "maximum": 36500},
                        }
                    ],
                    "responses": {"200": json_ok, "400": err, **auth},
                }
            },
        },
    }

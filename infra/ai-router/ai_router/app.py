"""The Flask application: auth, routing decision, dispatch, headers and the session log.

Run under gunicorn as `ai_router.app:create_app()`. Route modules raise ApiError and return a
Reply; only this module turns them into HTTP, so status mapping and headers stay uniform.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ai_router import timing
from ai_router.auth import require_key
from ai_router.classifier import Classifier, Decision
from ai_router.config import Config
from ai_router.errors import ApiError, error_body
from ai_router.health import check
from ai_router.primary import Primary
from ai_router.reply import JSON_CONTENT_TYPE, Reply
from ai_router.request_body import parse_chat_request, parse_json_object, parse_messages
from ai_router.session_log import SessionLog, SessionRecord, conversation_shape, session_salt
from ai_router.sse import DONE, sse_data
from ai_router.xai import RETRY_HEADER, XaiSearch

log = logging.getLogger("ai_router")

ROUTE_HEADER = "X-Route"
REASON_HEADER = "X-Route-Reason"
CLASSIFIER_MS_HEADER = "X-Classifier-Ms"
REQUEST_ID_HEADER = "X-Request-Id"

_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app(
    config: Config | None = None, *, transport: httpx.BaseTransport | None = None
) -> Flask:
    config = Config.from_env() if config is None else config
    _ensure_logging()
    # What this worker runs with, for whoever reads the log after a flag change; the keys are
    # left out by Config's repr.
    log.info("starting with %r", config)
    client = httpx.Client(
        transport=transport,
        timeout=config.upstream_timeout_s,
        # gunicorn runs 16 threads; each may hold a classifier and an upstream connection.
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        follow_redirects=False,
    )
    classifier = Classifier(config, client)
    primary = Primary(config, client)
    xai = XaiSearch(config, client)
    session_log = SessionLog(config.session_log)
    salt = session_salt(config.session_salt)
    started_at = int(time.time())

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["ai_router"] = {
        "config": config,
        "client": client,
        "classifier": classifier,
        "session_log": session_log,
    }

    @app.before_request
    def _begin() -> None:
        g.record = SessionRecord(
            request_id=str(uuid.uuid4()),
            method=request.method,
            path=request.path,
            started=time.monotonic(),
        )
        timing.start()
        if request.path == "/health" and request.method in ("GET", "HEAD"):
            return
        # Before routing and body parsing: unauthenticated callers learn nothing, not even
        # which paths exist or how big a body may be.
        require_key(request.headers.get("Authorization"), config.api_keys)

    @app.post("/v1/chat/completions")
    def chat_completions() -> Response:
        req = parse_chat_request(_read_body(config))
        g.record.stream = req.stream
        shape = conversation_shape(req.messages, salt)
        g.record.conversation, g.record.turn = shape.key, shape.turn
        g.record.messages, g.record.history_chars = shape.messages, shape.chars
        decision = _decide(classifier, req.messages)
        service = xai if decision.route == "search" else primary
        reply = service.serve(req)
        if reply.stream is None:
            g.record.prompt_tokens = reply.usage.prompt_tokens
            g.record.completion_tokens = reply.usage.completion_tokens
            return Response(
                reply.body, reply.status, headers=reply.headers, content_type=reply.content_type
            )
        # The request is not over when the view returns: the log line is written by the
        # stream itself once the last byte has gone out (or the client went away).
        g.deferred = True
        return Response(
            _logged_stream(reply.stream, reply, g.record, session_log),
            reply.status,
            headers={**_STREAM_HEADERS, **reply.headers},
            content_type=reply.content_type,
        )

    @app.post("/v1/route")
    def route_only() -> Response:
        messages = parse_messages(parse_json_object(_read_body(config)))
        decision = _decide(classifier, messages)
        return _json(
            {
                "route": decision.route,
                "reason": decision.reason,
                "classifier_ms": decision.classifier_ms,
            }
        )

    @app.get("/v1/models")
    def models() -> Response:
        model = {
            "id": config.model_name,
            "object": "model",
            "created": started_at,
            "owned_by": "ai-router",
        }
        return _json({"object": "list", "data": [model]})

    @app.get("/health")
    def health() -> Response:
        status, detail = check(config, client)
        return _json(detail, status)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        record: SessionRecord | None = g.get("record")
        if record is not None:
            record.error = exc.code
        return _json(exc.body(), exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return _api_error(_from_http_exception(exc, config))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _api_error(ApiError(500, "The router hit an internal error"))

    @app.after_request
    def _finish(response: Response) -> Response:
        record: SessionRecord | None = g.get("record")
        if record is None:
            return response
        response.headers[REQUEST_ID_HEADER] = record.request_id
        decision: Decision | None = g.get("decision")
        if decision is not None:
            response.headers[ROUTE_HEADER] = decision.route
            response.headers[REASON_HEADER] = decision.reason
            response.headers[CLASSIFIER_MS_HEADER] = str(decision.classifier_ms)
        _server_timing(response, record)
        record.upstream_retry = response.headers.get(RETRY_HEADER)
        if not g.get("deferred"):
            record.status = response.status_code
            _close_record(record)
            session_log.write(record)
        return response

    return app


def _read_body(config: Config) -> bytes:
    data = request.get_data(cache=False)
    if request.content_length is None and len(data) >= config.max_body_bytes:
        # A chunked upload is silently cut at MAX_CONTENT_LENGTH; reading on past the cap is
        # what makes werkzeug raise the 413 instead of handing over a truncated body.
        request.stream.read(1)
    return data


def _decide(classifier: Classifier, messages: list[dict[str, Any]]) -> Decision:
    decision = classifier.classify(messages)
    g.decision = decision
    g.record.route = decision.route
    g.record.reason = decision.reason
    g.record.classifier_ms = decision.classifier_ms
    g.record.history_tokens = decision.history_tokens
    seconds = decision.seconds
    timing.current().set(
        timing.CLASSIFY, decision.classifier_ms / 1000 if seconds is None else seconds
    )
    return decision


def _server_timing(response: Response, record: SessionRecord) -> None:
    """Server-Timing on a response that classified or called an upstream (ai_router.timing),
    and the upstream figures on its session log line. A stream's head goes out now, with its
    first chunk, so `total` ends here for streams too."""
    times = timing.current()
    if not times.durations:
        return
    times.set(timing.TOTAL, time.monotonic() - record.started)
    response.headers[timing.HEADER] = times.header()
    record.upstream_connect_ms = times.ms(timing.CONNECT)
    record.upstream_ttfb_ms = times.ms(timing.TTFB)


def _logged_stream(
    stream: Iterator[bytes], reply: Reply, record: SessionRecord, session_log: SessionLog
) -> Iterator[bytes]:
    try:
        yield from stream
    except Exception:
        # Headers are sent; the only honest signal left is an in-band error event.
        log.exception("stream failed on %s", record.path)
        reply.stream_error = "internal_error"
        yield sse_data(error_body("The router hit an internal error", "server_error")) + DONE
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        record.status = reply.status
        record.error = reply.stream_error
        record.prompt_tokens = reply.usage.prompt_tokens
        record.completion_tokens = reply.usage.completion_tokens
        _close_record(record)
        session_log.write(record)


def _close_record(record: SessionRecord) -> None:
    record.duration_ms = int((time.monotonic() - record.started) * 1000)


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # json.dumps rather than jsonify: key order stays as written (jsonify sorts keys).
    return Response(json.dumps(obj), status, headers=headers, content_type=JSON_CONTENT_TYPE)


# How much of a refused body is read and discarded, in multiples of the limit.
DRAIN_FACTOR = 16


def _drain_body(config: Config) -> None:
    """Read and discard what is left of a body refused as too large, up to DRAIN_FACTOR times
    the limit. A proxy in front (traefik) is still sending it when the 413 is decided on the
    declared Content-Length; closing the connection on unread data resets it, and the proxy
    then answers the client 502 instead of this 413. A larger body is left unread."""
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return
    budget = config.max_body_bytes * DRAIN_FACTOR
    if request.content_length is not None:
        budget = min(budget, request.content_length)
    read = 0
    while read < budget:
        chunk = stream.read(min(1 << 16, budget - read))
        if not chunk:
            break
        read += len(chunk)


def _from_http_exception(exc: HTTPException, config: Config) -> ApiError:
    status = exc.code or 500
    if status == 404:
        return ApiError(404, f"Unknown path: {request.path}")
    if status == 405:
        allowed = sorted(exc.valid_methods or []) if isinstance(exc, MethodNotAllowed) else []
        return ApiError(
            405,
            f"Method {request.method} is not allowed on {request.path}",
            headers={"Allow": ", ".join(allowed)} if allowed else {},
        )
    if status == 413:
        _drain_body(config)
        return ApiError(
            413,
            f"Request body exceeds {config.max_body_bytes} bytes (ROUTER_MAX_BODY_BYTES)",
        )
    if status >= 500:
        return ApiError(500, "The router hit an internal error")
    return ApiError(status, exc.description or "Bad request")


def _ensure_logging() -> None:
    # gunicorn configures only its own loggers; without this, fallback warnings would reach
    # stderr through logging's last-resort handler with no timestamp or level.
    logger = logging.getLogger("ai_router")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

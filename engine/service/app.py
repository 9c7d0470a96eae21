"""The ASGI application: the endpoint table, and what every request goes through.

Each request: a request id (the client's `X-Request-Id` when it is a plain token, else a new one,
returned either way); the API key (`Authorization: Bearer …`) and its scope; the JSON body, bounded and
checked against the endpoint's request schema; the handler, in a worker thread, under a time limit;
then one JSON log line and the metrics. Every failure, a routing miss (404, 405) and an unexpected
exception included, is answered with a problem body (problems.py), never with a framework's page or a
stack trace.

`ENDPOINTS` is the one table of what the service offers: routing, scopes, request and response schemas
and /openapi.json are all read from it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope as AsgiScope, Send

from ..errors import PromoError, RuleFileError
from ..ledger import LedgerError
from . import bodies, handlers, openapi, page
from .customer import locale_for
from .keys import Scope
from .metrics import MEDIA_TYPE as METRICS_MEDIA_TYPE, Metrics
from .problems import MEDIA_TYPE, ServiceError, from_input_error, from_ledger_error
from .state import Service, Settings

log = logging.getLogger("promo.service")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: handlers.Handler | None     # None: served by the application itself (metrics, openapi, preview)
    scope: Scope | None                  # None: no key needed
    summary: str
    request: str | None = None           # a name in bodies.REQUESTS
    body_required: bool = True
    responses: dict[int, str] = field(default_factory=dict)   # status -> a name in bodies.RESPONSES, or a project kind


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST", "/v1/evaluate", handlers.evaluate_cart, Scope.CHECKOUT,
             "Evaluate a cart: the trace (merchant view, default) or the customer view. `now` and `preview` "
             "need an admin key.", "EvaluateRequest", responses={200: "trace|customer_trace"}),
    Endpoint("POST", "/v1/checkouts", handlers.create_checkout, Scope.CHECKOUT,
             "Evaluate with the ledger's usage and balances and reserve; a retry with the same body and "
             "order id returns the same reservation.", "CheckoutRequest", responses={201: "Checkout"}),
    Endpoint("GET", "/v1/checkouts/{order_id}", handlers.read_checkout, Scope.ADMIN,
             "An order's reservation and trace.", responses={200: "Checkout"}),
    Endpoint("POST", "/v1/checkouts/{order_id}/commit", handlers.commit_checkout, Scope.CHECKOUT,
             "Turn the order's holds into uses.", "EmptyRequest", False, {200: "Reservation"}),
    Endpoint("POST", "/v1/checkouts/{order_id}/release", handlers.release_checkout, Scope.CHECKOUT,
             "Give the order's holds back.", "EmptyRequest", False, {200: "Reservation"}),
    Endpoint("POST", "/v1/checkouts/{order_id}/cancel", handlers.cancel_checkout, Scope.CHECKOUT,
             "Cancel a committed order, or return some of its lines.", "CancelRequest", False,
             {200: "Cancellation"}),
    Endpoint("POST", "/v1/codes/check", handlers.check_code, Scope.CHECKOUT,
             "Whether a code can be used now; the same sentence for unknown, expired and used codes.",
             "CodeCheckRequest", responses={200: "CodeCheck"}),
    Endpoint("GET", "/v1/promotions", handlers.list_promotions, Scope.ADMIN,
             "The rule set's promotions.", responses={200: "Promotions"}),
    Endpoint("GET", "/v1/promotions/{promotion_id}", handlers.read_promotion, Scope.ADMIN,
             "One promotion, with the ledger's counters for it.", responses={200: "Promotion"}),
    Endpoint("GET", "/v1/ruleset", handlers.ruleset_info, Scope.CHECKOUT,
             "The rule set being served: version and counts.", responses={200: "Ruleset"}),
    Endpoint("POST", "/v1/admin/reload", handlers.reload_rules, Scope.ADMIN,
             "Load the rules directory again; a rule set with problems is refused and the old one keeps "
             "serving.", "EmptyRequest", False, {200: "Reload"}),
    Endpoint("POST", "/v1/admin/preview", handlers.preview_cart, Scope.ADMIN,
             "The preview page's evaluation: the full trace at the given instant, draft and paused promotions "
             "in `preview` treated as active.", "PreviewRequest", responses={200: "trace"}),
    Endpoint("POST", "/v1/admin/explain", handlers.explain, Scope.ADMIN,
             "Why one promotion applies or not to this cart: every check evaluate() makes for it, in order "
             "(`promo explain --json`); an unknown id is 404.", "ExplainRequest", responses={200: "Explanation"}),
    Endpoint("GET", "/v1/admin/examples", handlers.examples, Scope.ADMIN,
             "The example cases the service was started with (`promo serve --examples DIR`).",
             responses={200: "Examples"}),
    Endpoint("GET", "/preview", None, None, "The preview page for marketers (HTML). It holds no data: it asks for "
             "an admin key and calls the admin endpoints.", responses={200: "html"}),
    Endpoint("GET", "/healthz", handlers.healthz, None, "The process is up.", responses={200: "Health"}),
    Endpoint("GET", "/readyz", handlers.readyz, None, "Rules loaded and the ledger reachable.",
             responses={200: "Health", 503: "Health"}),
    Endpoint("GET", "/metrics", None, Scope.ADMIN, "Prometheus text format.", responses={200: "metrics"}),
    Endpoint("GET", "/openapi.json", None, None, "This description (OpenAPI 3.1).", responses={200: "openapi"}),
)


def create_app(settings: Settings) -> ASGIApp:
    """The application for `settings`: rules, keys and ledger are loaded now, so a bad start fails here."""
    metrics = Metrics(settings.metrics)
    service = Service(settings, metrics.reloaded)
    document = openapi.document(ENDPOINTS)
    routes = [Route(e.path, _endpoint(e, service, metrics, document), methods=[e.method]) for e in ENDPOINTS]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        service.close()   # the ledger's connections, when uvicorn shuts down

    app = Starlette(routes=routes, exception_handlers={HTTPException: _routing_problem, Exception: _internal_problem},
                    lifespan=lifespan)
    return Observed(app, metrics)


def _endpoint(e: Endpoint, service: Service, metrics: Metrics, document: dict[str, Any]) -> Any:
    async def endpoint(request: Request) -> Response:
        request.state.route = e.path
        try:
            return await _answer(e, request, service, metrics, document)
        except ServiceError as exc:
            return _problem(request, exc)
        except Exception as exc:  # noqa: BLE001 - a client never sees a traceback; the log names the request
            return await _internal_problem(request, exc)
    return endpoint


async def _answer(e: Endpoint, request: Request, service: Service, metrics: Metrics,
                  document: dict[str, Any]) -> Response:
    key = _authorised(e, request, service)
    request.state.key = key.name if key is not None else None
    if e.path == "/metrics":
        return Response(metrics.text(), media_type=METRICS_MEDIA_TYPE)
    if e.path == "/openapi.json":
        return JSONResponse(document)
    if e.path == "/preview":
        html, headers = page.page()
        return Response(html, media_type=page.MEDIA_TYPE, headers=headers)
    try:
        with anyio.fail_after(service.settings.timeout_seconds):
            body = {}
            if e.request is not None:
                body = bodies.check(e.request, await bodies.read_body(request.headers, request.stream(),
                                                                      e.body_required))
            if key is not None and not key.allows(Scope.ADMIN):
                _refuse_admin_options(body)
            # With several workers, first switch to a rule set another worker published (shared.py).
            served = await anyio.to_thread.run_sync(service.current, abandon_on_cancel=True) \
                if service.outdated() else service.served
            call = handlers.Call(served, service, metrics, key, body, dict(request.path_params),
                                 locale_for(request.headers.get("accept-language")))
            status, doc = await anyio.to_thread.run_sync(_run, e.handler, call, abandon_on_cancel=True)
    except TimeoutError:
        raise ServiceError("timeout", f"no answer within {service.settings.timeout_seconds:g} s; a checkout may "
                                      f"still have been reserved: retry it with the same order id") from None
    speaks = body.get("view") == "customer" or e.path == "/v1/codes/check"   # sentences in the customer's language
    headers = {"Content-Language": call.locale.replace("_", "-")} if speaks else None
    return JSONResponse(doc, status_code=status, headers=headers)


def _run(handler: handlers.Handler, call: handlers.Call) -> handlers.Reply:
    """The handler, with the engine's and the ledger's refusals turned into problems."""
    try:
        return handler(call)
    except LedgerError as exc:
        raise from_ledger_error(exc) from None
    except RuleFileError as exc:
        problems = tuple({"path": p.path, "message": p.message, "file": p.file.rsplit("/", 1)[-1], "line": p.line}
                         for p in exc.problems)
        raise ServiceError("rules_refused", str(exc).split("\n", 1)[0], problems=problems) from None
    except PromoError as exc:
        raise from_input_error(exc) from None


def _authorised(e: Endpoint, request: Request, service: Service) -> Any:
    if e.scope is None:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ServiceError("unauthorized", "send an API key as `Authorization: Bearer <key>`",
                           headers={"WWW-Authenticate": "Bearer"})
    key = service.keys.ring.find(token.strip())
    if key is None:
        raise ServiceError("unauthorized", "the API key is not known or was revoked",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if not key.allows(e.scope):
        raise ServiceError("forbidden", f"this endpoint needs a key with the {e.scope.value} scope; "
                                        f"this key has {key.scope.value}")
    return key


def _refuse_admin_options(body: dict[str, Any]) -> None:
    """A checkout-scoped client never chooses `now` (the server's clock decides, so nobody buys at last
    week's prices) nor previews drafts."""
    for option in ("now", "preview"):
        if option in body:
            raise ServiceError("forbidden", f"`{option}` needs an admin key; a checkout key evaluates at the "
                                            f"server's time with the live promotions",
                               problems=({"path": f"$.{option}", "message": "needs an admin key"},))


def _problem(request: Request | None, exc: ServiceError) -> Response:
    if request is not None:
        request.state.reasons = tuple(r["reason"] for r in exc.refusals) or (exc.reason,)
    return Response(exc.to_json(), status_code=exc.code, media_type=MEDIA_TYPE, headers=exc.headers)


async def _routing_problem(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    reason = {404: "not_found", 405: "method_not_allowed"}.get(status, "invalid_request")
    detail = {404: "no endpoint at this path; see /openapi.json",
              405: "this endpoint does not take this method; see /openapi.json"}.get(status, "the request was refused")
    return _problem(request, ServiceError(reason, detail, status))


async def _internal_problem(request: Request, exc: Exception) -> Response:
    log.error("internal error %s in %s", type(exc).__name__, request.url.path, exc_info=exc)
    return _problem(request, ServiceError("internal_error", "the service failed on this request"))


class Observed:
    """The outermost layer: the request id, one JSON log line per request, the metrics. Codes, keys and
    account data are never logged: only the method, path, status, latency, key name and reasons."""

    def __init__(self, app: Starlette, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            route = state.get("route", "unmatched")
            reasons = tuple(state.get("reasons", ()))
            self.metrics.observe(scope["method"], route, status, seconds, reasons)
            log.info(json.dumps({"request_id": request_id, "method": scope["method"], "path": scope["path"][:200],
                                 "route": route, "status": status, "latency_ms": round(seconds * 1000, 2),
                                 "key": state.get("key"), "reasons": list(reasons),
                                 "pid": os.getpid()}, sort_keys=True))


def from_environment() -> ASGIApp:
    """The application of one worker of `promo serve --workers N`, from the settings it was started with."""
    from .cli import SETTINGS_VARIABLE, configure_logging
    configure_logging()
    return create_app(Settings(**json.loads(os.environ[SETTINGS_VARIABLE])))

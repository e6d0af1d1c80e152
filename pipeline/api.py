"""The score API: the nights' published scores where a CRM needs them, read-only.

``python -m pipeline serve`` (``make serve``; ``api_host``:``api_port``, 127.0.0.1:8001 by
default) serves, over the results store (:mod:`pipeline.results`, SQLite or PostgreSQL by
``results_db_url``, or ``api_db_url``: a read-only role's):

* ``GET /v1/customers/{customer_id}`` - the customer's latest published score: probability, risk
  band, rank in its night, the three reasons as stored, the model version, the night, and whether
  the customer is on the latest night's campaign; 404 with a one-line JSON error for an id that was
  never scored. Ids as the business gives them (text or integer; URL-encode ``/`` and ``+``);
* ``GET /v1/customers/{customer_id}/history?nights=N`` - its scores over the last N published nights;
* ``GET /v1/campaigns/{date}`` - a night's campaign (``latest`` or YYYY-MM-DD) in rank order, by
  pages (``limit``, ``offset``; ``next_offset`` says where the next page starts);
* ``GET /v1/nights/latest`` - the latest night: counts, alert severity, the drift verdict, the model;
* ``GET /health`` - the store reachable, the latest night and its age (no token needed);
* the OpenAPI docs at ``/docs``.

**Read-only by construction**: the engine cannot write (:func:`pipeline.results.read_only_engine`:
SQLite ``mode=ro`` and ``query_only``; PostgreSQL read-only sessions and transactions). **One
state per request**: each request reads in one read transaction, and a night's scores and its
``published_nights`` row are written in one transaction, so a request sees the previous night or
the new one, never a mix. **Cached by the night**: every answer carries the ETag of the night it
was read from (its date and the digest of its scores); a request whose ``If-None-Match`` holds it
gets 304. **A bearer token** when ``api_token`` is set (compared in constant time, never logged).
Nothing imports this module but the command line (the layers contract in pyproject.toml).
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline import results
from pipeline.artifacts import as_date
from pipeline.config import Settings
from pipeline.model.score import round_probability
from pipeline.monitoring.alerts import SEVERITIES, SUPPRESSED, highest_severity

log = logging.getLogger(__name__)

#: the most nights a history request may ask for
MOST_NIGHTS = 366
#: the token's scheme in the OpenAPI docs (their Authorize button); checked in create_app
BEARER = HTTPBearer(auto_error=False, description="the api_token setting, when it is set")


class ApiError(Exception):
    """An answer other than 200: its status and a one-line message (the JSON ``{"error": ...}``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Score(BaseModel):
    """A customer's score on one night."""

    night: dt.date = Field(description="the night (logical date D) the score is as of")
    churn_probability: float = Field(description="the calibrated probability of churn within the horizon")
    risk_band: str = Field(description="high: on the night's campaign; medium: at risk, over the campaign's "
                                       "capacity; low: below the model's campaign threshold")
    rank: int | None = Field(description="the customer's place in the night, 1 = highest churn probability")
    on_campaign: bool = Field(description="on the night's campaign list (risk band high)")
    reasons: list[str] = Field(description="the score's top reasons, as stored (most important first)")
    model_version: str = Field(description="the registered model version that scored the night")


class Customer(Score):
    """A customer's latest published score."""

    customer_id: str
    latest_night: dt.date = Field(description="the latest published night")
    current: bool = Field(description="scored on the latest night (a customer no longer active keeps their last score)")
    scored: int = Field(description="customers scored on the score's night")


class History(BaseModel):
    customer_id: str
    nights: int = Field(description="the last N published nights asked for")
    scores: list[Score] = Field(description="the customer's scores on those nights, latest first")


class CampaignEntry(BaseModel):
    rank: int
    customer_id: str
    churn_probability: float = Field(description="rounded to 3 decimals, as the e-mailed campaign file says it")
    reasons: list[str]


class CampaignPage(BaseModel):
    night: dt.date
    model_version: str
    total: int = Field(description="customers on the night's campaign")
    limit: int
    offset: int
    next_offset: int | None = Field(description="the offset of the next page; null on the last one")
    customers: list[CampaignEntry]


class Drift(BaseModel):
    features: int
    drifted: int
    share: float | None
    verdict: str = Field(description="critical: share at or above drift_share_threshold; warning: at or above "
                                     "drift_share_warning; none; unknown when the night has no drift rows")


class NightSummary(BaseModel):
    night: dt.date
    model_version: str
    scored: int
    at_risk: int = Field(description="customers at or above the model's campaign threshold")
    campaign: int = Field(description="customers on the campaign (risk band high)")
    severity: str = Field(description="the highest severity of the night's alerts not suppressed (info when none)")
    alerts: dict[str, int] = Field(description="the night's alerts not suppressed, by severity")
    drift: Drift
    prediction_psi: float | None = Field(description="PSI of the night's scores vs the model's reference")
    matured_roc_auc: float | None = Field(description="ROC-AUC on the matured labels of night D - horizon, if any")


class Health(BaseModel):
    status: str
    store: str
    latest_night: dt.date | None
    age_days: int | None = Field(description="days from the latest night to today (UTC)")


def _reasons(row: Any) -> list[str]:
    return [r for r in (row.reason_1, row.reason_2, row.reason_3) if r is not None]


def _latest(conn: sa.Connection) -> Any:
    """The latest published night's ``published_nights`` row (None before the first)."""
    n = results.PUBLISHED_NIGHTS
    return conn.execute(sa.select(n).order_by(n.c.as_of.desc()).limit(1)).first()


def _etag(published: Any) -> str:
    return f'"{as_date(published.as_of).isoformat()}-{published.digest[:16]}"'


def _cached(request: Request, response: Response, published: Any) -> bool:
    """Set the night's ETag on ``response``; True when the request already holds it (answer 304)."""
    etag = _etag(published)
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = "no-cache"  # a client keeps the answer and revalidates it with the ETag
    held = [t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")]
    return etag in held or "*" in held


def _not_modified(response: Response) -> Response:
    return Response(status_code=304, headers={k: response.headers[k] for k in ("ETag", "Cache-Control")})


def _score_columns() -> list[sa.Column[Any]]:
    s = results.SCORES.c
    return [s.as_of, s.customer_id, s.churn_probability, s.risk_band, s.model_version, s.reason_1, s.reason_2,
            s.reason_3, s.rank]


def _nights(conn: sa.Connection, last: int | None = None) -> list[Any]:
    """The keys of the published nights, latest first (the ``last`` ones)."""
    n = results.PUBLISHED_NIGHTS.c
    return [r[0] for r in conn.execute(sa.select(n.as_of).order_by(n.as_of.desc()).limit(last))]


def _scored_on(conn: sa.Connection, customer_id: str, nights: list[Any]) -> Any:
    """The customer's score on the latest of ``nights`` it has one (None: none): one primary-key
    probe per night ((as_of, customer_id): no index by customer, which would slow every publish)."""
    if not nights:
        return None
    s = results.SCORES.c
    return conn.execute(sa.select(*_score_columns()).where(s.as_of.in_(nights), s.customer_id == customer_id)
                        .order_by(s.as_of.desc()).limit(1)).first()


def _rank(conn: sa.Connection, row: Any) -> int:
    """The rank of a score published before ranks were stored (counted: slower)."""
    s = results.SCORES.c
    ahead = sa.or_(s.churn_probability > row.churn_probability,
                   sa.and_(s.churn_probability == row.churn_probability, s.customer_id < row.customer_id))
    return 1 + int(conn.execute(sa.select(sa.func.count()).where(s.as_of == row.as_of, ahead)).scalar() or 0)


def _score(conn: sa.Connection, row: Any) -> dict[str, Any]:
    return {"night": as_date(row.as_of), "churn_probability": float(row.churn_probability), "risk_band": row.risk_band,
            "rank": row.rank if row.rank is not None else _rank(conn, row), "on_campaign": row.risk_band == "high",
            "reasons": _reasons(row), "model_version": row.model_version}


def _night_of(conn: sa.Connection, date: str) -> Any:
    """The ``published_nights`` row of ``date`` (``latest`` or YYYY-MM-DD); 404 when not published."""
    if date == "latest":
        published = _latest(conn)
        if published is None:
            raise ApiError(404, "no night has been published yet")
        return published
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise ApiError(422, f"night {date!r}: a date as YYYY-MM-DD, or latest") from None
    n = results.PUBLISHED_NIGHTS
    published = conn.execute(sa.select(n).where(n.c.as_of == results.night(day))).first()
    if published is None:
        raise ApiError(404, f"no night published for {day.isoformat()}")
    return published


def create_app(settings: Settings, engine: sa.Engine | None = None) -> FastAPI:
    """The score API over ``settings``' results store (``engine``: a read-only engine on it,
    :func:`pipeline.results.read_only_engine` by default: a store that does not exist or is at
    another schema version is a DataError before the app serves)."""
    engine = engine or results.read_only_engine(settings, settings.api_db_url or None)
    backend = engine.dialect.name
    token = settings.api_token.encode()

    async def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if not token:
            return
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, token):
            raise ApiError(401, "this API needs its bearer token: Authorization: Bearer <api_token>",
                           {"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="churnflow score API", version="1",
                  description="The nights' published churn scores, read-only (pipeline/api.py). Every /v1 answer "
                              "carries the ETag of the night it was read from; If-None-Match with it gives 304.")
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])

    @app.exception_handler(ApiError)
    def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        said = "; ".join(f"{' '.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {said}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(sa.exc.DBAPIError)
    def _store_down(request: Request, exc: sa.exc.DBAPIError) -> JSONResponse:
        log.warning("results store: %s", str(exc.orig).splitlines()[0] if exc.orig else exc)
        return JSONResponse({"error": "the results store cannot be read now"}, status_code=503)

    def latest_or_404(conn: sa.Connection) -> Any:
        published = _latest(conn)
        if published is None:
            raise ApiError(404, "no night has been published yet")
        return published

    @v1.get("/customers/{customer_id:path}/history", response_model=History, responses={404: {}, 304: {}},
            summary="A customer's scores over the last N published nights")
    def customer_history(customer_id: str, request: Request, response: Response,
                         nights: Annotated[int, Query(ge=1, le=MOST_NIGHTS)] = 30) -> Any:
        s = results.SCORES.c
        with engine.connect() as conn:
            if _cached(request, response, latest_or_404(conn)):
                return _not_modified(response)
            last_nights = _nights(conn, nights)
            rows = conn.execute(sa.select(*_score_columns()).where(s.as_of.in_(last_nights), s.customer_id == customer_id)
                                .order_by(s.as_of.desc())).all()
            if not rows and _scored_on(conn, customer_id, _nights(conn)) is None:
                raise ApiError(404, f"no scores for customer {customer_id!r}")
            return {"customer_id": customer_id, "nights": nights, "scores": [_score(conn, r) for r in rows]}

    @v1.get("/customers/{customer_id:path}", response_model=Customer, responses={404: {}, 304: {}},
            summary="A customer's latest published score")
    def customer(customer_id: str, request: Request, response: Response) -> Any:
        n = results.PUBLISHED_NIGHTS
        with engine.connect() as conn:
            published = latest_or_404(conn)
            if _cached(request, response, published):
                return _not_modified(response)
            # the latest night first (its primary key), then the customer's latest earlier night
            row = _scored_on(conn, customer_id, [published.as_of]) or _scored_on(conn, customer_id, _nights(conn)[1:])
            if row is None:
                raise ApiError(404, f"no scores for customer {customer_id!r}")
            current = row.as_of == published.as_of or as_date(row.as_of) == as_date(published.as_of)
            scored = published.rows if current else conn.execute(
                sa.select(n.c.rows).where(n.c.as_of == row.as_of)).scalar()
            score = _score(conn, row)
        body = {**score, "night": score["night"].isoformat(), "customer_id": customer_id,
                "on_campaign": current and score["on_campaign"], "latest_night": as_date(published.as_of).isoformat(),
                "current": current, "scored": int(scored or 0)}
        # the hot path: the answer as built (the Customer model documents it; validating it again costs a third)
        return JSONResponse(body, headers={k: response.headers[k] for k in ("ETag", "Cache-Control")})

    @v1.get("/campaigns/{date}", response_model=CampaignPage, responses={404: {}, 304: {}},
            summary="A night's campaign, highest churn probability first, by pages")
    def campaign(date: str, request: Request, response: Response,
                 limit: Annotated[int | None, Query(ge=1, description="customers per page (default: api_page_size; "
                                                                         "at most 10 times it)")] = None,
                 offset: Annotated[int, Query(ge=0)] = 0) -> Any:
        s = results.SCORES.c
        size = limit or settings.api_page_size
        if size > 10 * settings.api_page_size:
            raise ApiError(422, f"invalid request: query limit: at most {10 * settings.api_page_size} (10 x api_page_size)")
        with engine.connect() as conn:
            published = _night_of(conn, date)
            if _cached(request, response, published):
                return _not_modified(response)
            rows = conn.execute(
                sa.select(*_score_columns()).where(s.as_of == published.as_of, s.risk_band == "high")
                .order_by(s.rank, s.churn_probability.desc(), s.customer_id).limit(size).offset(offset)).all()
        # rounded as the e-mailed campaign file rounds them (one function: round_probability)
        entries = [{"rank": r.rank if r.rank is not None else offset + i + 1, "customer_id": r.customer_id,
                    "churn_probability": float(round_probability(r.churn_probability)), "reasons": _reasons(r)}
                   for i, r in enumerate(rows)]
        following = offset + len(entries)
        return {"night": as_date(published.as_of), "model_version": published.model_version, "total": published.campaign,
                "limit": size, "offset": offset, "next_offset": following if following < published.campaign else None,
                "customers": entries}

    @v1.get("/nights/latest", response_model=NightSummary, responses={404: {}, 304: {}},
            summary="The latest night: counts, alert severity, drift verdict, model version")
    def latest_night(request: Request, response: Response) -> Any:
        a, d, p, m = results.ALERTS.c, results.DRIFT.c, results.PREDICTION.c, results.PERFORMANCE.c
        with engine.connect() as conn:
            published = latest_or_404(conn)
            if _cached(request, response, published):
                return _not_modified(response)
            key = published.as_of
            raised = [r.severity for r in conn.execute(sa.select(a.severity, a.status).where(a.run_date == key))
                      if r.status != SUPPRESSED]
            features, drifted = conn.execute(sa.select(sa.func.count(), sa.func.sum(sa.case((d.drifted, 1), else_=0)))
                                             .where(d.run_date == key)).one()
            psi = conn.execute(sa.select(p.psi_vs_reference).where(p.run_date == key)).scalar()
            roc_auc = conn.execute(sa.select(m.roc_auc).where(m.run_date == key)).scalar()
        share = int(drifted or 0) / features if features else None
        verdict = ("unknown" if share is None else "critical" if share >= settings.drift_share_threshold
                   else "warning" if share >= settings.drift_share_warning else "none")
        return {"night": as_date(key), "model_version": published.model_version, "scored": published.rows,
                "at_risk": published.at_risk, "campaign": published.campaign,
                "severity": highest_severity(raised),
                "alerts": {level: raised.count(level) for level in SEVERITIES},
                "drift": {"features": int(features or 0), "drifted": int(drifted or 0), "share": share, "verdict": verdict},
                "prediction_psi": None if psi is None else float(psi),
                "matured_roc_auc": None if roc_auc is None else float(roc_auc)}

    @app.get("/health", response_model=Health, responses={503: {}}, summary="The store reachable, the latest night")
    def health() -> Any:
        try:
            with engine.connect() as conn:
                published = _latest(conn)
        except sa.exc.DBAPIError as exc:
            log.warning("health: results store: %s", str(exc.orig or exc).splitlines()[0])
            return JSONResponse({"status": "unavailable", "store": backend, "error": "the results store cannot be read"},
                                status_code=503)
        day = as_date(published.as_of) if published is not None else None
        return {"status": "ok", "store": backend, "latest_night": day,
                "age_days": (dt.datetime.now(dt.UTC).date() - day).days if day else None}

    app.include_router(v1)
    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None, *, access_log: bool = True) -> None:
    """Serve the score API with uvicorn, one worker (``api_host``, ``api_port`` unless given)."""
    import uvicorn

    from pipeline.ingestion.source import masked

    app = create_app(settings)
    host, port = host or settings.api_host, port or settings.api_port
    log.info("score API on http://%s:%d (docs: /docs), results store %s, %s", host, port,
             masked(settings.api_db_url or settings.results_url),
             "bearer token required" if settings.api_token else "no token (api_token is empty)")
    uvicorn.run(app, host=host, port=port, workers=1, access_log=access_log, log_level="info")

"""The Regression Tripwire's HTTP API: policies, evaluation, state, risk guard, go-live, gate and audit."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from kpiguard import audit, enforcement
from kpiguard.api._json import json_response
from kpiguard.auth import Scope, requires
from kpiguard.db.models import AuditEvent
from kpiguard.errors import ValidationFailed
from kpiguard.keys import EVALUATOR, METRICS, SESSIONS, SETTINGS
from kpiguard.names import NAME_PATTERN
from kpiguard.tripwire import Action, Aggregation, Guard
from kpiguard.tripwire._store import list_policies, list_states, policy_from_row, policy_json, state_json, upsert_policy
from kpiguard.validation import read_object, validate

routes = web.RouteTableDef()

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Actor = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PolicyUpsertIn(_In):
    """A full or partial policy; fields not given keep their stored value."""

    domain: Name
    metric: Name
    window_events: int | None = Field(None, ge=1)
    baseline_events: int | None = Field(None, ge=1)
    min_events_to_enforce: int | None = Field(None, ge=1)
    max_drop_fraction: float | None = Field(None, gt=0, lt=1)
    action: Action | None = None
    aggregation: Aggregation | None = None
    enabled: bool | None = None
    dry_run: bool | None = None
    guard: Guard | None = None
    guard_confidence: float | None = Field(None, ge=0.5, lt=1)
    guard_alpha: float | None = Field(None, gt=0, lt=1)
    changed_by: Actor | None = None
    reason: Reason | None = None
    false_positive: bool = False


class EvaluateIn(_In):
    """Which policy to evaluate; none means every enabled one."""

    domain: Name | None = None
    metric: Name | None = None
    actor: Actor | None = None


class RiskCheckIn(_In):
    """A piece of work an engine wants to take."""

    engine: Name
    amount: float = Field(gt=0)
    actor: Actor | None = None
    correlation_id: Actor | None = None


class RiskPolicyUpsertIn(_In):
    """An engine's risk policy; fields not given keep their stored value."""

    engine: Name
    enabled: bool | None = None
    max_single_amount: float | None = Field(None, gt=0)
    daily_limit: float | None = Field(None, gt=0)
    changed_by: Actor | None = None
    reason: Reason | None = None


class KillSwitchIn(_In):
    """Engage or release the global kill switch; a reason is required."""

    engaged: bool
    reason: Reason
    changed_by: Actor | None = None


async def _body(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    return await read_object(request, request.app[SETTINGS].max_body_bytes, allow_empty=allow_empty)


# --- policies ---

@routes.post("/api/governance/regression/policies/upsert")
@requires(Scope.ADMIN)
async def upsert(request: web.Request) -> web.Response:
    """Create or merge-update a policy; enabled=true re-enables what its tripwire stopped."""
    data = validate(PolicyUpsertIn, await _body(request))
    fields = data.model_dump(exclude_unset=True, exclude={"domain", "metric", "false_positive"})
    fields = {k: v for k, v in fields.items() if v is not None}
    async with request.app[SESSIONS]() as session, session.begin():
        result = await upsert_policy(session, data.domain, data.metric, fields, source=audit.Source.API,
                                     false_positive=data.false_positive)
    evaluator = request.app[EVALUATOR]
    await evaluator.refresh_watched()
    await evaluator.refresh_enforcement_gauges()
    return json_response(result.to_json(), status=201 if result.created else 200)


@routes.get("/api/governance/regression/policies")
@requires(Scope.READ)
async def policies(request: web.Request) -> web.Response:
    """Every policy."""
    async with request.app[SESSIONS]() as session:
        rows = await list_policies(session)
    return json_response([policy_json(policy_from_row(r), r.updated_at) for r in rows])


# --- evaluation and state ---

@routes.post("/api/governance/regression/evaluate")
@requires(Scope.ADMIN)
async def evaluate(request: web.Request) -> web.Response:
    """Evaluate one policy (domain and metric) or every enabled one; store and return the state."""
    data = validate(EvaluateIn, await _body(request, allow_empty=True))
    if (data.domain is None) != (data.metric is None):
        missing = "metric" if data.metric is None else "domain"
        raise ValidationFailed(f"{missing}: give both domain and metric, or neither", field=missing)
    evaluator = request.app[EVALUATOR]
    if data.domain is not None and data.metric is not None:
        verdict = await evaluator.evaluate_one(data.domain, data.metric, actor=data.actor, source=audit.Source.API)
        return json_response(verdict.to_json())
    verdicts = await evaluator.evaluate_all(actor=data.actor, source=audit.Source.API)
    return json_response([v.to_json() for v in verdicts])


@routes.get("/api/governance/regression/state")
@requires(Scope.READ)
async def state(request: web.Request) -> web.Response:
    """Every (domain, metric)'s regression state, in the seed's shape."""
    async with request.app[SESSIONS]() as session:
        states = await list_states(session)
        policies_by_key = {(p.domain, p.metric): policy_from_row(p) for p in await list_policies(session)}
    return json_response([state_json(s, policies_by_key.get((s.domain, s.metric))) for s in states])


# --- risk guard ---

@routes.post("/api/governance/risk/check-and-reserve")
@requires(Scope.INGEST)
async def check_and_reserve(request: web.Request) -> web.Response:
    """Whether the engine may take the amount; reserves it when ok; always written to the ledger."""
    data = validate(RiskCheckIn, await _body(request))
    async with request.app[SESSIONS]() as session, session.begin():
        check = await enforcement.check_and_reserve(
            session, data.engine, data.amount, actor=data.actor, correlation_id=data.correlation_id
        )
    request.app[METRICS].risk_checks.labels(
        data.engine if check.reason is not enforcement.Reason.UNKNOWN_ENGINE else "unknown",
        "ok" if check.ok else "denied", check.reason.value,
    ).inc()
    return json_response(check.to_json())


@routes.get("/api/governance/risk/ledger/today")
@requires(Scope.READ)
async def ledger_today(request: web.Request) -> web.Response:
    """Today's (UTC) risk checks with counts by engine and reason."""
    async with request.app[SESSIONS]() as session:
        return json_response(await enforcement.ledger_today(session))


@routes.get("/api/governance/risk/policies")
@requires(Scope.READ)
async def risk_policies(request: web.Request) -> web.Response:
    """Every engine's risk policy."""
    async with request.app[SESSIONS]() as session:
        return json_response([enforcement.risk_policy_json(p) for p in await enforcement.list_risk_policies(session)])


@routes.post("/api/governance/risk/policies/upsert")
@requires(Scope.ADMIN)
async def risk_policy_upsert(request: web.Request) -> web.Response:
    """Create or update an engine's risk policy and limits, audited."""
    data = validate(RiskPolicyUpsertIn, await _body(request))
    async with request.app[SESSIONS]() as session, session.begin():
        result = await enforcement.upsert_risk_policy(
            session, data.engine, data.model_dump(exclude_unset=True, exclude={"engine"}), source=audit.Source.API
        )
    await request.app[EVALUATOR].refresh_enforcement_gauges()
    return json_response(result)


# --- go-live ---

@routes.get("/api/governance/go-live/state")
@requires(Scope.READ)
async def go_live_state(request: web.Request) -> web.Response:
    """The global go-live state."""
    async with request.app[SESSIONS]() as session:
        return json_response((await enforcement.read_state(session)).to_json())


@routes.post("/api/governance/go-live/kill-switch")
@requires(Scope.ADMIN)
async def kill_switch(request: web.Request) -> web.Response:
    """Engage or release the kill switch by hand; needs a reason."""
    data = validate(KillSwitchIn, await _body(request))
    async with request.app[SESSIONS]() as session, session.begin():
        changed, before = await enforcement.set_kill_switch(
            session, data.engaged, reason=data.reason, actor=data.changed_by, source=audit.Source.API.value
        )
        if changed:
            audit.record(
                session, kind=audit.Kind.ENFORCEMENT if data.engaged else audit.Kind.RELEASE,
                source=audit.Source.API, action="KILL_SWITCH" if data.engaged else "RELEASE_KILL_SWITCH",
                actor=data.changed_by, reason=data.reason, before=before,
                after={"kill_switch_engaged": data.engaged, "reason": data.reason},
            )
        state_now = await enforcement.read_state(session)
    await request.app[EVALUATOR].refresh_enforcement_gauges()
    return json_response({**state_now.to_json(), "changed": changed})


# --- gate for proxies (nginx auth_request) ---

@routes.get("/api/governance/gate")
@requires(Scope.READ)
async def gate(request: web.Request) -> web.StreamResponse:
    """204 if a request of this class for this engine may run now, 403 with the reason if not."""
    engine = request.query.get("engine")
    exec_class = request.query.get("class", enforcement.PROD_EXEC)
    async with request.app[SESSIONS]() as session:
        decision = await enforcement.decide(session, engine, exec_class)
    if decision.allowed:
        return web.Response(status=204)
    return json_response(decision.to_json(), status=403, headers={"X-Kpiguard-Reason": decision.reason or ""})


# --- audit ---

@routes.get("/api/governance/audit")
@requires(Scope.READ)
async def audit_trail(request: web.Request) -> web.Response:
    """The newest audit entries (``limit``, default 100, at most 1000; optional ``kind``)."""
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError as exc:
        raise ValidationFailed("limit: must be an integer", field="limit") from exc
    if not 1 <= limit <= 1000:
        raise ValidationFailed("limit: must be 1 to 1000", field="limit")
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    kind = request.query.get("kind")
    if kind is not None:
        if kind not in {k.value for k in audit.Kind}:
            raise ValidationFailed("kind: unknown kind", field="kind", choices=[k.value for k in audit.Kind])
        stmt = stmt.where(AuditEvent.kind == kind)
    async with request.app[SESSIONS]() as session:
        rows = (await session.execute(stmt)).scalars().all()
    return json_response([audit.to_json(r) for r in rows])

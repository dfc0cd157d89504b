"""The model registry, decisions and training requests; operators' controls."""

from __future__ import annotations

import json

from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.auth import require_operator
from api.deps import collection_or_404, iso
from fairvalue import lifecycle
from storage.db import session_scope
from storage.tables import ModelAlias, ModelVersion, PromotionDecision, TrainingRequest


def list_models(request: Request) -> JSONResponse:
    with session_scope() as session:
        coll = collection_or_404(session)
        versions = session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id)
                                .order_by(ModelVersion.version.desc())).all()
        number = {v.id: v.version for v in versions}
        aliases = {a.alias: number.get(a.model_version_id)
                   for a in session.exec(select(ModelAlias).where(ModelAlias.collection_id == coll.id))}
        decisions = session.exec(select(PromotionDecision).where(PromotionDecision.collection_id == coll.id)
                                 .order_by(PromotionDecision.id.desc()).limit(50)).all()
    return JSONResponse({
        "collection": coll.slug,
        "aliases": aliases,
        "versions": [{"version": v.version, "estimator": v.estimator, "artifact_uri": v.artifact_uri,
                      "sha256": v.sha256, "created_at": iso(v.created_at), "data_start": iso(v.data_start),
                      "data_end": iso(v.data_end), "n_train": v.n_train, "code_version": v.code_version,
                      "parent": number.get(v.parent_id), "metrics": v.metrics} for v in versions],
        "decisions": [{"id": d.id, "created_at": iso(d.created_at), "decision": d.decision, "by": d.decided_by,
                       "contender": number.get(d.contender_version_id), "champion": number.get(d.champion_version_id),
                       "training_request": d.training_request_id, "reason": d.reason, "numbers": d.numbers}
                      for d in decisions],
    })


def list_training_requests(request: Request) -> JSONResponse:
    state = request.query_params.get("state")
    with session_scope() as session:
        coll = collection_or_404(session)
        query = select(TrainingRequest).where(TrainingRequest.collection_id == coll.id)
        if state:
            query = query.where(TrainingRequest.state == state)
        rows = session.exec(query.order_by(TrainingRequest.id.desc()).limit(200)).all()
    return JSONResponse({"training_requests": [
        {"id": r.id, "state": r.state, "reason": r.reason, "attempts": r.attempts, "claimed_by": r.claimed_by,
         "lease_expires_at": iso(r.lease_expires_at), "created_at": iso(r.created_at),
         "published_at": iso(r.published_at), "model_version_id": r.model_version_id, "error": r.error,
         "trigger": r.trigger, "params": r.params} for r in rows]})


async def _json_body(request: Request) -> dict:
    body = await request.body()
    if not body:
        return {}
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPException(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise HTTPException(422, "body must be a JSON object")
    return value


async def create_training_request(request: Request) -> JSONResponse:
    require_operator(request)
    body = await _json_body(request)
    reason = body.get("reason")
    params = body.get("params", {})
    if not isinstance(reason, str) or not reason.strip():
        raise HTTPException(422, "reason (a non-empty string) is required")
    if not isinstance(params, dict):
        raise HTTPException(422, "params must be an object of training parameters")
    try:
        lifecycle._train_params(lifecycle.get_settings(), params)
    except (TypeError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None
    outcome = await run_in_threadpool(lifecycle.enqueue_retrain, reason.strip(), params)
    from tasks.lifecycle import publish_training

    await run_in_threadpool(publish_training, outcome.request_id)
    return JSONResponse({"id": outcome.request_id, "state": "queued"}, status_code=202)


async def promote_version(request: Request) -> JSONResponse:
    require_operator(request)
    raw = request.path_params["version"]
    if not raw.isdigit():
        raise HTTPException(400, f"version must be a number, got {raw[:40]!r}")
    body = await _json_body(request)
    try:
        result = await run_in_threadpool(lifecycle.operator_promote, int(raw), str(body.get("reason", "operator")))
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    if result["changed"]:
        from tasks.app import app

        app.send_task("fairvalue.nowcast")
    return JSONResponse(result)


async def rollback(request: Request) -> JSONResponse:
    require_operator(request)
    body = await _json_body(request)
    try:
        result = await run_in_threadpool(lifecycle.operator_rollback, str(body.get("reason", "operator")))
    except LookupError as exc:
        raise HTTPException(409, str(exc)) from None
    from tasks.app import app

    app.send_task("fairvalue.nowcast")
    return JSONResponse(result)

"""The model registry as the API and the CLI read it: versions with their lineage and metrics,
aliases, the decision trail, and the training requests with each one's result. Operators' names
and workers' claims are HIDDEN unless `people` (fairvalue/answers.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import select

from fairvalue.answers import check_choice, error_head, hidden, iso, iso_text, page_bounds, without_operator
from fairvalue.errors import NotFound, unread_artifact
from fairvalue.reads import collection_row
from models import gates
from storage import requests
from storage.artifacts import ArtifactError, get_store
from storage.db import session_scope
from storage.registry import version_numbers
from storage.tables import ModelAlias, ModelVersion, PromotionDecision, TrainingRequest


def _decision_dict(d: PromotionDecision, number: dict[int, int], people: bool = True) -> dict[str, Any]:
    return {"id": d.id, "created_at": iso(d.created_at), "decision": d.decision, "by": d.decided_by,
            # an operator's token name or "cli:<login>"
            "operator": hidden((d.numbers or {}).get("operator"), people),
            "contender": number.get(d.contender_version_id), "champion": number.get(d.champion_version_id),
            "training_request": d.training_request_id, "reason": _reason(d, people),
            "numbers": without_operator(_stored_times(d.numbers), people)}


def _reason(d: PromotionDecision, people: bool) -> str:
    """A decision's reason. An artifact's refusal recorded before its reason left the store's words
    out (its numbers name the artifact_uri, and no store_error) went on, after its first colon,
    with them: the artifact's URI and the store's error, cut for a reader without a token."""
    numbers = d.numbers if isinstance(d.numbers, dict) else {}
    if "artifact_uri" in numbers and "store_error" not in numbers:
        return error_head(d.reason, people)
    return d.reason


def _version_dict(v: ModelVersion, number: dict[int, int], people: bool) -> dict[str, Any]:
    """A registered version. Where the artifact store keeps its model and its diagnostics page
    (their bucket and keys) is for operators: HIDDEN unless `people`, as fairvalue.errors keeps a
    store's words out of the answers."""
    metrics = _stored_times(v.metrics)
    if not people and isinstance(metrics, dict) and isinstance(metrics.get("diagnostics"), dict):
        metrics["diagnostics"] = {**metrics["diagnostics"], "uri": hidden(metrics["diagnostics"].get("uri"), people)}
    return {"version": v.version, "estimator": v.estimator, "artifact_uri": hidden(v.artifact_uri, people),
            "sha256": v.sha256, "created_at": iso(v.created_at), "data_start": iso(v.data_start),
            "data_end": iso(v.data_end), "n_train": v.n_train, "code_version": v.code_version,
            "parent": number.get(v.parent_id), "metrics": metrics}


def _stored_times(numbers: dict) -> dict:
    """A version's metrics or a decision's numbers as stored JSON, with the times recorded before
    they were written with iso() given their Z: metrics.holdout_start, numbers.window, and the
    window of a gated version's metrics.gate_evaluation (the numbers of its decision)."""
    if not isinstance(numbers, dict):
        return numbers
    out = dict(numbers)
    if "holdout_start" in out:
        out["holdout_start"] = iso_text(out["holdout_start"])
    if isinstance(out.get("window"), dict):
        out["window"] = {k: iso_text(v) if k in ("from", "to") else v for k, v in out["window"].items()}
    if isinstance(out.get("gate_evaluation"), dict):
        out["gate_evaluation"] = _stored_times(out["gate_evaluation"])
    return out


def models_overview(slug: str | None = None, decisions_limit: int = 50, people: bool = True) -> dict[str, Any]:
    """Versions (artifact, sha256, lineage, metrics), aliases and the latest decisions (operators'
    names, and where the artifact store keeps the artifacts, HIDDEN unless `people`)."""
    with session_scope() as session:
        coll = collection_row(session, slug)
        versions = session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id)
                                .order_by(ModelVersion.version.desc())).all()
        number = {v.id: v.version for v in versions}
        aliases = {a.alias: number.get(a.model_version_id)
                   for a in session.exec(select(ModelAlias).where(ModelAlias.collection_id == coll.id))}
        rows = session.exec(select(PromotionDecision).where(PromotionDecision.collection_id == coll.id)
                            .order_by(PromotionDecision.id.desc()).limit(decisions_limit)).all()
    return {
        "collection": coll.slug,
        "kind": coll.kind,
        "aliases": aliases,
        "versions": [_version_dict(v, number, people) for v in versions],
        "decisions": [_decision_dict(d, number, people) for d in rows],
    }


def decisions(slug: str | None = None, decision: str | None = None, limit: int = 50,
              offset: int = 0, people: bool = True) -> dict[str, Any]:
    """Promotions, shadows, rejections and rollbacks, newest first (operators' names HIDDEN unless `people`)."""
    limit, offset = page_bounds(limit, offset)
    with session_scope() as session:
        coll = collection_row(session, slug)
        query = select(PromotionDecision).where(PromotionDecision.collection_id == coll.id)
        count = select(func.count()).select_from(PromotionDecision).where(PromotionDecision.collection_id == coll.id)
        if decision:
            decision = check_choice("decision", decision, gates.RECORDED)
            query = query.where(PromotionDecision.decision == decision)
            count = count.where(PromotionDecision.decision == decision)
        rows = session.exec(query.order_by(PromotionDecision.id.desc()).offset(offset).limit(limit)).all()
        total = session.exec(count).one()
        number = version_numbers(session, [i for d in rows for i in (d.contender_version_id, d.champion_version_id)])
    return {"collection": coll.slug, "total": total, "offset": offset, "limit": limit,
            "next_offset": offset + limit if offset + limit < total else None,
            "decisions": [_decision_dict(d, number, people) for d in rows]}


def training_requests(slug: str | None = None, state: str | None = None, limit: int = 200,
                      offset: int = 0, people: bool = True) -> dict[str, Any]:
    """Training requests with state, attempts, lease and result, newest first (the claiming
    worker and the asking operator HIDDEN, and a failure's error cut to its head, unless `people`)."""
    limit, offset = page_bounds(limit, offset, default=200)
    with session_scope() as session:
        coll = collection_row(session, slug)
        query = select(TrainingRequest).where(TrainingRequest.collection_id == coll.id)
        count = select(func.count()).select_from(TrainingRequest).where(TrainingRequest.collection_id == coll.id)
        if state:
            state = check_choice("state", state, requests.STATES)
            query = query.where(TrainingRequest.state == state)
            count = count.where(TrainingRequest.state == state)
        rows = session.exec(query.order_by(TrainingRequest.id.desc()).offset(offset).limit(limit)).all()
        total = session.exec(count).one()
        number = version_numbers(session, [r.model_version_id for r in rows])
        verdicts = _request_verdicts(session, [r.id for r in rows])
    # Paged as /decisions is: the total and where the next page starts (None on the last).
    return {"collection": coll.slug, "total": total, "offset": offset, "limit": limit,
            "next_offset": offset + limit if offset + limit < total else None, "training_requests": [
        {"id": r.id, "state": r.state, "reason": r.reason, "attempts": r.attempts,
         "claimed_by": hidden(r.claimed_by, people),
         "lease_expires_at": iso(r.lease_expires_at), "created_at": iso(r.created_at),
         "published_at": iso(r.published_at), "model_version_id": r.model_version_id,
         "model_version": number.get(r.model_version_id), "decision": verdicts.get(r.id),
         "error": error_head(r.error, people),  # a failed training's exception: its store's endpoint, say
         "trigger": without_operator(r.trigger, people), "params": r.params} for r in rows]}


def training_request_outcome(request_id: int) -> dict[str, Any]:
    """Where a recorded request is now: its state, and its result when it has one (the version
    trained, the gates' decision; the error of a failed one). What a replayed Idempotency-Key answers."""
    with session_scope() as session:
        r = session.get(TrainingRequest, request_id)
        number = version_numbers(session, [r.model_version_id])
        verdict = _request_verdicts(session, [r.id]).get(r.id)
    return {"state": r.state, **({"model_version": number[r.model_version_id]} if r.model_version_id in number else {}),
            **({"decision": verdict} if verdict else {}), **({"error": r.error} if r.state == requests.FAILED else {})}


def _request_verdicts(session, request_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The gates' verdict on each decided request: its first recorded decision (promote, shadow or
    reject), the decision's id and its reason."""
    if not request_ids:
        return {}
    rows = session.exec(select(PromotionDecision).where(PromotionDecision.training_request_id.in_(request_ids))
                        .order_by(PromotionDecision.id)).all()
    out: dict[int, dict[str, Any]] = {}
    for d in rows:
        out.setdefault(d.training_request_id, {"id": d.id, "decision": d.decision, "reason": d.reason})
    return out


def version_diagnostics(slug: str | None, version: int) -> tuple[bytes, str]:
    """A version's diagnostics page (models/diagnostics.py), read from the artifact store and
    verified against the sha256 its metrics recorded: (html, sha256). NotFound for no such version
    or one without a page (a daily-priced collection's, or one trained before pages were kept);
    Lost when it is gone from the store or not its bytes, Unavailable when the store does not
    answer now (fairvalue.errors.unread_artifact)."""
    with session_scope() as session:
        coll = collection_row(session, slug)
        found = session.exec(select(ModelVersion).where(ModelVersion.collection_id == coll.id,
                                                        ModelVersion.version == version)).first()
    if found is None:
        raise NotFound(f"no model version {version} in {coll.slug}")
    page = (found.metrics or {}).get("diagnostics")
    if not isinstance(page, dict) or not page.get("uri"):
        raise NotFound(f"model version {version} of {coll.slug} has no diagnostics page (a daily-priced "
                       "collection's versions have none, nor versions whose holdout had too few sales)")
    try:
        # The short budget: an HTTP request must not hang on a hung store for minutes.
        return get_store(short_budget=True).get(page["uri"], page["sha256"]), page["sha256"]
    except ArtifactError as exc:
        raise unread_artifact(exc, f"the diagnostics page of version {version}",
                              f"diagnostics of version {version} of {coll.slug}") from None

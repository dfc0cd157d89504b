"""The retrain policy (daily): retrain when the live error, the drift or the champion's age with
new data says so (models/policy.py decides); records one request per day and reason."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from fairvalue import kinds, pipeline
from fairvalue.answers import iso
from fairvalue.errors import unread_artifact
from fairvalue.lifecycle.live_error import live_metrics, live_scored
from fairvalue.lifecycle.training_requests import PolicyOutcome, record_request
from fairvalue.settings import Settings, get_settings
from models import policy
from storage import snapshots
from storage.artifacts import ArtifactError
from storage.db import session_scope
from storage.registry import CHAMPION, get_alias
from storage.tables import Collection, ModelVersion, utcnow


def run_policy(settings: Settings | None = None, now=None) -> PolicyOutcome:
    """Decide whether to retrain; if so, record one request (idempotent per day and reason).
    The caller publishes the request id after this commits."""
    settings = settings or get_settings()
    now = now or utcnow()
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        champion = get_alias(session, coll, CHAMPION)
        # The champion's own values: a model since rolled back or replaced is not what a retrain
        # would replace (its errors kept filing live_mape retrains for a week after a rollback).
        # Its shadowed ones too: a champion restored by a rollback, or promoted from the shadow,
        # valued those sales live, before its values were published.
        live_error = {"n": 0}
        if champion is not None:
            live_error = live_metrics(live_scored(session, coll, now - timedelta(days=settings.policy_live_window_days),
                                                  (snapshots.PUBLISHED, snapshots.SHADOW), champion.id))
        new_data = _new_since_training(session, coll, champion)
    drift_summary = None
    if champion is not None and kinds.is_daily(coll):
        drift_summary = {"error": "drift is not measured for daily-priced collections yet"}
    elif champion is not None:
        try:
            report, _ = pipeline.drift(settings)
            drift_summary = report.summary
        except ArtifactError as exc:
            # Not measured, the champion's artifact not read: recorded, and the live error and the
            # age still decide. Without the store's text (its endpoint, bucket and keys: logged),
            # which the run's and the request's public reads would show (GET /v1/queue).
            unread = unread_artifact(exc, "the champion's model", f"drift of {settings.collection}")
            drift_summary = {"error": str(unread)}
        except (LookupError, ValueError) as exc:  # not measured: recorded, and the rest still decides
            drift_summary = {"error": str(exc)}
    age = (now - champion.created_at).total_seconds() / 86400 if champion else None
    config = policy.PolicyConfig(
        max_live_mape=settings.policy_max_live_mape, max_share_drifted=settings.policy_max_share_drifted,
        max_prediction_psi=settings.policy_max_prediction_psi, max_champion_age_days=settings.retrain_max_age_days,
    )
    decision = policy.decide_retrain(live_error, drift_summary, age, config, new_data)
    if not decision.retrain:
        return PolicyOutcome(False, decision.reasons, decision.numbers, None, False, notes=decision.notes)
    key = policy.idempotency_key(settings.collection, now.date(), decision.reasons)
    outcome = record_request(settings, key, "; ".join(decision.reasons), decision.numbers, {})
    outcome.notes = decision.notes
    return outcome


def _new_since_training(session: Session, coll: Collection, champion: ModelVersion | None) -> policy.NewData | None:
    """What arrived after the champion's training data ended, or was stored after it was made (a
    backfill): clean sales, or prices, for the age trigger; None without a champion or for one
    registered without its data_end."""
    if champion is None or champion.data_end is None:
        return None
    kind = kinds.kind_of(coll)
    return policy.NewData(kind.count_after(session, coll, champion.data_end, champion.created_at), kind.observations,
                          iso(champion.data_end))

"""The monitor (hourly): roll back a recent promotion whose live error is worse than the previous
champion's shadow on the same sales (models/monitor.py decides), and settle a shadowed contender
after its shadow period."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fairvalue import pipeline
from fairvalue.answers import iso
from fairvalue.lifecycle.champion_changes import artifact_refusal, rollback
from fairvalue.lifecycle.live_error import live_metrics, live_scored
from fairvalue.settings import Settings, get_settings
from models import gates, live, monitor
from storage import snapshots
from storage.artifacts import ArtifactError, get_store
from storage.db import session_scope
from storage.decisions import due_rollback, forget_due_rollback, keep_due_rollback, record_decision
from storage.registry import (
    CHAMPION,
    CONTENDER,
    PREVIOUS_CHAMPION,
    alias_since,
    get_alias,
    lock_collection,
    promote,
    remove_alias,
)
from storage.snapshots import published_snapshot
from storage.tables import utcnow

# A shadowed contender's outcome when its artifact could not be read back (the store, not the
# model): it stays in the shadow, and the next run settles it.
DEFERRED = "deferred"


def run_monitor(settings: Settings | None = None, now=None) -> dict[str, Any]:
    """Roll back a recent promotion whose live error is worse than the previous champion's
    shadow on the same sales (or one a run before decided to roll back and could not); settle a
    shadowed contender after its shadow period."""
    settings = settings or get_settings()
    now = now or utcnow()
    out: dict[str, Any] = {}
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        lock_collection(session, coll)
        champion = get_alias(session, coll, CHAMPION)
        _judge_probation(session, settings, coll, champion, now, out)
        contender = get_alias(session, coll, CONTENDER)
        shadow_since = alias_since(session, coll, CONTENDER)
        # Not in the run that rolled back, or that would have but for the store: the contender's
        # shadow was scored against the champion removed (or about to be); the next run judges it
        # against the restored one.
        if contender and champion and shadow_since and "rolled_back_to" not in out \
                and "rollback_deferred" not in out and now - shadow_since >= timedelta(days=settings.shadow_days):
            cont = live_scored(session, coll, shadow_since, (snapshots.SHADOW,), contender.id)
            # The champion's own values over the shadow period, published or, for one restored by
            # a rollback, shadowed while it was the previous champion.
            champ = live_scored(session, coll, shadow_since, (snapshots.PUBLISHED, snapshots.SHADOW), champion.id)
            cont, champ = live.paired(cont, champ)
            c_m, h_m = live_metrics(cont), live_metrics(champ)
            better = c_m.get("n", 0) >= settings.monitor_min_sales and \
                c_m["mape"] <= h_m["mape"] * (1 - settings.gate_mape_margin)
            # Its shadow values may have come from a worker's cache of it: read it back first. A
            # store that cannot be read just now leaves it in the shadow for the next run to settle.
            refusal, unread = _read_back(session, settings, coll, contender, champion) if better else (None, None)
            if unread:
                out["shadow"] = {"contender": contender.version, "decision": DEFERRED, "error": unread}
            elif refusal:
                out["shadow"] = {"contender": contender.version, "decision": gates.REJECT, "error": refusal}
            else:
                verdict = gates.PROMOTE if better else gates.REJECT
                record_decision(session, coll, verdict, gates.BY_MONITOR,
                                 f"after {settings.shadow_days} days in shadow: "
                                 f"contender live MAPE {c_m.get('mape')} vs champion {h_m.get('mape')} on "
                                 f"{c_m.get('n', 0)} sales", {"contender": c_m, "champion": h_m},
                                 contender=contender.id, champion=champion.id)
                if better:
                    promote(session, coll, contender, settings.probation_days)
                out["shadow"] = {"contender": contender.version, "decision": verdict,
                                 "numbers": {"contender": c_m, "champion": h_m, "min_n": settings.monitor_min_sales,
                                             "mape_margin": settings.gate_mape_margin}}
            if not unread:
                remove_alias(session, coll, CONTENDER)
        # A change of champion asks for a nowcast after it commits; a worker or broker lost between
        # the two leaves the old model's values published until the next scheduled nowcast (a day,
        # for cards). The task asks again for whatever this finds.
        published, champion_now = published_snapshot(session, coll), get_alias(session, coll, CHAMPION)
        if published is not None and champion_now is not None and published.model_version_id != champion_now.id:
            out["champion_not_published"] = {"champion": champion_now.version, "snapshot": published.id}
    return out


def _judge_probation(session, settings: Settings, coll, champion, now, out: dict[str, Any]) -> None:
    """Roll back a champion on probation that is worse live than the previous one, or one whose
    rollback a run before decided and kept due, the store not reading the previous model back
    then: that decision stands until it is carried out or refused on record, past the probation too
    (else a store down until the probation ended let it lapse and kept the champion judged worse)."""
    previous = get_alias(session, coll, PREVIOUS_CHAMPION)
    since = alias_since(session, coll, PREVIOUS_CHAMPION)
    due = _still_due(session, coll, champion, previous)
    verdict = None
    if due is not None:  # the judgement that decided it stands: the probation is not weighed again
        decided = iso(due.decided_at)
        out["rollback_due"] = {"champion": champion.version, "previous": previous.version, "decided_at": decided}
        verdict = (f"{due.reason} (decided at {decided}; deferred while the artifact store could not read "
                   f"v{previous.version})", {**due.numbers, "decided_at": decided})
    elif champion and previous and since and now - since <= timedelta(days=settings.probation_days):
        decision = _probation_decision(session, settings, coll, champion, previous, since)
        out["probation"] = {"champion": champion.version, "previous": previous.version,
                            "rollback": decision.rollback, "reason": decision.reason, "numbers": decision.numbers}
        verdict = (decision.reason, decision.numbers) if decision.rollback else None
    if verdict is not None:
        _roll_back(session, settings, coll, champion, previous, *verdict, out)


def _still_due(session, coll, champion, previous):
    """The rollback kept due, while the aliases are still the pair it judged; else none, and one kept
    for another pair is forgotten (promote and rollback forget it as they move the champion; this
    catches any other change of the aliases)."""
    due = due_rollback(session, coll)
    if due is None:
        return None
    if champion and previous and (due.champion_version_id, due.previous_version_id) == (champion.id, previous.id):
        return due
    forget_due_rollback(session, coll)
    return None


def _probation_decision(session, settings: Settings, coll, champion, previous, since) -> monitor.MonitorDecision:
    """models/monitor.py on the sales since the promotion, the champion's published values paired
    with the previous champion's shadow ones."""
    new = live_scored(session, coll, since, (snapshots.PUBLISHED,), champion.id)
    old = live_scored(session, coll, since, (snapshots.SHADOW,), previous.id)
    new, old = live.paired(new, old)
    config = monitor.MonitorConfig(probation_days=settings.probation_days, min_n=settings.monitor_min_sales,
                                   rollback_margin=settings.rollback_margin)
    return monitor.decide_rollback(live_metrics(new), live_metrics(old), config)


def _roll_back(session, settings: Settings, coll, champion, previous, reason: str, numbers: dict,
               out: dict[str, Any]) -> None:
    """As for an operator's rollback, the model it restores must still be readable. One whose artifact
    is gone or corrupt can never be rolled back to: its alias goes (the probation with it), so the
    refusal is not recorded again every hour, and the champion stays. A store that cannot be read just
    now says nothing of the model: the aliases stay as they are, the rollback is kept due (its first
    reason and numbers; a later run's reason is not kept over them) and the next run, an hour on,
    tries again."""
    refusal, unread = _read_back(session, settings, coll, previous, champion)
    if unread:
        keep_due_rollback(session, coll, champion, previous, reason, numbers)
        out["rollback_deferred"] = unread
    elif refusal:
        remove_alias(session, coll, PREVIOUS_CHAMPION)
        forget_due_rollback(session, coll)
        out["rollback_refused"] = refusal
    else:
        rollback(session, coll, champion, previous, gates.BY_MONITOR, reason, numbers)
        out["rolled_back_to"] = previous.version


def _read_back(session, settings: Settings, coll, target, champion) -> tuple[str | None, str | None]:
    """(refusal, unread) of reading `target`'s artifact back before the champion alias moves to
    it: the refusal recorded on the version (its artifact gone or failing its sha256), or why the
    store could not be read just now (nothing recorded, nothing changed: the next run tries
    again); both None when it is sound. Each as the run's detail tells it, the store's words in
    parentheses: a reader without an operator token sees its head alone (queue_reads.public_detail)."""
    try:
        refusal = artifact_refusal(session, get_store(settings), coll, target, champion, gates.BY_MONITOR)
    except ArtifactError as exc:
        return None, (f"artifact of version {target.version} could not be read ({exc}); nothing changed, "
                      "the next run tries again")
    return (None if refusal is None else f"{refusal.reason} ({refusal.store_error})"), None

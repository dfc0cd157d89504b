"""Pausing a loop: an operator's switch that each loop's task reads before it acts (the CLI's
pause/resume; the API has no route for it). A paused loop's task records a skipped run."""

from __future__ import annotations

from sqlalchemy import update

from storage.db import session_scope
from storage.tables import LoopState, utcnow

# The loops an operator pauses (each one's task then skips): also the names the CLI and the API take.
NOWCAST_LOOP, POLICY_LOOP, TRAINING_LOOP, MONITOR_LOOP = "nowcast", "policy", "training", "monitor"


LOOPS = (NOWCAST_LOOP, POLICY_LOOP, TRAINING_LOOP, MONITOR_LOOP)


def set_paused(loop: str, paused: bool, reason: str = "", by: str = "") -> LoopState | None:
    """Pause or resume a loop (every collection's); `by` names who did (the CLI's user@host).
    A loop already so is left as it is and its state returned: a second pause used to replace the
    first one's reason, time and author with its own. None when this call changed it. A reason
    is optional, and held to what an operator's reason may be (operators.BadReason: it was stored
    whatever its length, and shown on the queue page).

    Two operators at once: the change is one conditional UPDATE (paused only if running, resumed
    only if paused), so exactly one of them makes it; the other's waits on its row lock, matches
    nothing once it commits, and reads back the state it left. A read then a write let both see the
    loop running, and the later pause's reason replaced the earlier one's, both answered "paused"."""
    if loop not in LOOPS:
        raise ValueError(f"unknown loop {loop!r}; loops: {', '.join(LOOPS)}")
    if reason.strip():
        from fairvalue.lifecycle.operators import operator_reason  # operators imports this module's package

        reason = operator_reason(reason)
    from storage.upsert import insert_ignoring_conflicts

    table = LoopState.__table__
    with session_scope() as session:
        if paused:  # a loop never paused has no row yet: make one (running) for the update to match
            insert_ignoring_conflicts(session, table, [{"loop": loop, "paused": False, "reason": "",
                                                        "updated_at": utcnow(), "changed_by": ""}])
        changed = session.execute(
            update(table).where(table.c.loop == loop, table.c.paused == (not paused))
            .values(paused=paused, reason=reason, updated_at=utcnow(), changed_by=by[:100])
        ).rowcount == 1
        if changed:
            return None
        state = session.get(LoopState, loop, populate_existing=True)
        return LoopState.model_validate(state) if state else LoopState(loop=loop, paused=False)


def is_paused(loop: str) -> bool:
    with session_scope() as session:
        state = session.get(LoopState, loop)
        return bool(state and state.paused)

"""The training and monitor loops where things happen at once or fail halfway, on the real
database: a worker dying on every attempt, a lease lapsing before a failure is recorded (the
failure is recorded all the same unless a newer attempt claimed the request), the
database failing one lease renewal, the champion changing while a contender trains, and a
rollback in the same monitor run that settles a shadow."""

from __future__ import annotations

import dataclasses
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, update
from sqlmodel import select

from fairvalue import lifecycle, pipeline
from fairvalue.lifecycle import training
from fairvalue.settings import get_settings
from models import gates
from storage import requests
from storage.db import session_scope
from storage.registry import CHAMPION, CONTENDER, PREVIOUS_CHAMPION, get_alias, remove_alias, set_alias
from storage.tables import (
    ModelAlias,
    ModelVersion,
    NowcastRow,
    NowcastSnapshot,
    PromotionDecision,
    Sale,
    TrainingRequest,
    utcnow,
)

pytestmark = pytest.mark.integration
QUICK = {"max_iter": 8, "band_max_iter": 4}


@pytest.fixture(scope="module")
def outcome(seeded):
    """A contender trained and gated against the session champion, for the tests that register
    it under a decision of their own (each replaces the decision, or the champion it was gated
    against, on a copy): one training for all of them instead of 7 s each. What they test is
    _register_and_decide, the monitor and the rollbacks, not the training."""
    return lifecycle.train_and_gate(get_settings(), QUICK)


def request_row(request_id: int) -> TrainingRequest:
    with session_scope() as session:
        row = session.get(TrainingRequest, request_id)
        session.expunge(row)
        return row


def new_request(name: str) -> int:
    return lifecycle.record_request(get_settings(), f"races:{name}:{time.time_ns()}", name, {}, QUICK).request_id


def claim_and_lapse(request_id: int, worker: str) -> bool:
    """A worker claims the request and dies: its lease is already over."""
    with session_scope() as session:
        taken = requests.claim(session, request_id, worker, timedelta(0), get_settings().training_max_attempts)
    time.sleep(0.01)
    return taken


def test_a_request_whose_worker_dies_every_time_fails_after_its_attempts(seeded):
    request_id = new_request("dies every time")
    attempts = get_settings().training_max_attempts
    assert all(claim_and_lapse(request_id, f"doomed-{i}") for i in range(attempts))
    assert not claim_and_lapse(request_id, "one-more")  # the limit holds without release_for_retry
    assert request_id not in lifecycle.requests_to_republish()  # the sweep fails it instead
    row = request_row(request_id)
    assert (row.state, row.attempts) == (requests.FAILED, attempts)
    assert "lease expired on each of" in row.error


def test_a_failure_reported_after_the_lease_lapsed_is_recorded(seeded):
    """No newer attempt claimed the request: the lapsed attempt's failure is its to record (queued
    with the backoff, then failed on its last attempt with its own error, not "died or stalled")."""
    request_id = new_request("late failure")
    assert claim_and_lapse(request_id, "slow")
    with session_scope() as session:
        outcome = requests.release_for_retry(session, request_id, "slow", "boom", 2, timedelta(0))
    assert outcome == requests.QUEUED
    row = request_row(request_id)
    assert (row.state, row.error, row.claimed_by, row.lease_expires_at) == (requests.QUEUED, "boom", None, None)
    assert claim_and_lapse(request_id, "slow again")
    with session_scope() as session:
        outcome = requests.release_for_retry(session, request_id, "slow again", "OperationalError: gone", 2,
                                             timedelta(0))
    assert outcome == requests.FAILED
    row = request_row(request_id)
    assert (row.state, row.attempts, row.error) == (requests.FAILED, 2, "OperationalError: gone")


def test_a_failure_reported_after_the_sweep_failed_the_request_replaces_died_or_stalled(seeded):
    request_id = new_request("failed by the sweep, then reported")
    max_attempts = get_settings().training_max_attempts
    for i in range(max_attempts):
        assert claim_and_lapse(request_id, f"stalled-{i}")
    assert request_id not in lifecycle.requests_to_republish()  # the sweep fails it as abandoned
    assert "died or stalled" in request_row(request_id).error
    with session_scope() as session:  # an earlier attempt's report changes nothing
        assert requests.release_for_retry(session, request_id, "stalled-0", "old", max_attempts, timedelta(0)) == "lost"
    with session_scope() as session:
        outcome = requests.release_for_retry(session, request_id, f"stalled-{max_attempts - 1}",
                                             "OperationalError: the real cause", max_attempts, timedelta(0))
    assert outcome == requests.FAILED
    row = request_row(request_id)
    assert (row.state, row.error) == (requests.FAILED, "OperationalError: the real cause")


def test_a_training_failing_at_the_database_after_its_lease_ran_out_records_its_error(seeded, monkeypatch):
    """A stage outlasts the lease (the heartbeat stops renewing it at the time limit), then fails at
    the real database: its last attempt is failed with that error, not left for the sweep to call
    "the worker died or stalled"."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    settings = get_settings().model_copy(update={"training_lease_seconds": 1, "training_time_limit_seconds": 1,
                                                 "training_max_attempts": 1})
    request_id = new_request("fails at the database after its lease")

    def stage_that_outlasts_the_lease_and_fails_at_the_database(_settings, _params, checkpoint=None):
        deadline = time.monotonic() + 30
        while request_row(request_id).lease_expires_at > utcnow() and time.monotonic() < deadline:
            time.sleep(0.2)
        with session_scope() as session:
            session.execute(text("SET LOCAL statement_timeout = 50"))
            session.execute(text("SELECT pg_sleep(1)"))  # canceled by the server: an OperationalError

    monkeypatch.setattr(training, "train_and_gate", stage_that_outlasts_the_lease_and_fails_at_the_database)
    with pytest.raises(OperationalError, match="statement timeout") as raised:
        training.train_request(request_id, "lapsed-worker", settings)
    assert f"training request {request_id} is now failed" in raised.value.__notes__
    row = request_row(request_id)
    assert row.state == requests.FAILED and "statement timeout" in row.error
    assert request_id not in lifecycle.requests_to_republish()


def test_two_processes_of_one_worker_hold_their_leases_apart(seeded):
    """A prefork training worker's processes share its name; the lease is held by the claim's
    own token, so a process whose lease lapsed cannot undo its sibling's claim."""
    from tasks.lifecycle import claim_token

    request_id = new_request("two processes of one worker")
    lapsed, heir = claim_token("celery@trainhost"), claim_token("celery@trainhost")
    assert lapsed != heir and lapsed.startswith("celery@trainhost/")
    assert claim_and_lapse(request_id, lapsed)
    with session_scope() as session:
        assert requests.claim(session, request_id, heir, timedelta(minutes=5), 3)
    with session_scope() as session:
        assert requests.release_for_retry(session, request_id, lapsed, "late failure", 3, timedelta(0)) == "lost"
    row = request_row(request_id)
    assert (row.state, row.claimed_by) == (requests.CLAIMED, heir)
    with session_scope() as session:  # done with it, so later tests see no claimed request
        assert requests.fenced_update(session, request_id, heir, state=requests.FAILED, error="test")


def test_one_failed_lease_renewal_does_not_stop_the_heartbeat(seeded, monkeypatch):
    request_id = new_request("database blip")
    lease = timedelta(seconds=1.5)
    with session_scope() as session:
        assert requests.claim(session, request_id, "steady", lease, 3)
    real, calls = requests.heartbeat, []

    def first_renewal_fails(*args):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("server closed the connection unexpectedly")
        return real(*args)

    monkeypatch.setattr(requests, "heartbeat", first_renewal_fails)
    try:
        with training._Heartbeat(request_id, "steady", lease) as heart:
            time.sleep(2.2)  # four renewals due, one every 0.5 s; the first fails
        assert len(calls) >= 3 and not heart.lost
        assert request_row(request_id).lease_expires_at > utcnow()
    finally:
        # Done with it: left claimed, its lease lapsed a moment later, for any later sweep to republish.
        with session_scope() as session:
            requests.claimed_update(session, request_id, "steady", state=requests.FAILED, error="test")


def test_a_contender_gated_against_a_replaced_champion_is_shadowed_not_promoted(seeded, outcome):
    settings = get_settings()
    request_id = new_request("champion changes while training")
    # As if the gates had passed it against a champion that has since been replaced.
    passed = dataclasses.replace(outcome.decision, decision=gates.PROMOTE, reason="passed every gate")
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        champion = get_alias(session, coll, CHAMPION)
        stale = session.exec(select(ModelVersion.id).where(ModelVersion.collection_id == coll.id,
                                                           ModelVersion.id != champion.id)).first()
        assert requests.claim(session, request_id, "racer", timedelta(minutes=5), 3)
    try:
        result = training._register_and_decide(
            settings, request_id, "racer", dataclasses.replace(outcome, decision=passed, champion_id=stale))
        assert result["decision"] == gates.SHADOW and "champion changed" in result["reason"]
        with session_scope() as session:
            coll = pipeline.ensure_collection_of(session, settings)
            assert get_alias(session, coll, CHAMPION).id == champion.id
            shadowed = get_alias(session, coll, CONTENDER)
            assert shadowed.version == result["model_version"]
            assert shadowed.parent_id == stale  # its lineage: the champion the gates compared it with
    finally:
        with session_scope() as session:
            remove_alias(session, pipeline.ensure_collection_of(session, settings), CONTENDER)


def test_a_monitor_run_that_rolls_back_does_not_settle_the_shadow_against_the_removed_champion(seeded):
    """B replaced A and is worse on live sales; contender C has shadowed long enough and beats B
    but not A. The run rolls back to A and keeps C in shadow; the next run judges C against A
    (A's values while it was the previous champion included) and rejects it."""
    settings = get_settings()
    now = utcnow()
    promoted_at, shadow_from, valued_at = now - timedelta(days=4), now - timedelta(days=3.5), now - timedelta(days=3.4)
    made: dict[str, list] = {"versions": [], "snapshots": [], "sales": []}
    try:
        with aliases_and_decisions_restored():  # restored before the versions they name are deleted
            with session_scope() as session:
                coll = pipeline.ensure_collection_of(session, settings)
                a = get_alias(session, coll, CHAMPION)
                top = max(session.exec(select(ModelVersion.version).where(ModelVersion.collection_id == coll.id)).all())
                copied = {k: getattr(a, k) for k in ModelVersion.model_fields
                          if k not in ("id", "version", "created_at")}
                b, c = (ModelVersion(**copied, version=top + i) for i in (1, 2))
                session.add_all([b, c])
                session.flush()
                made["versions"] = [b.id, c.id]
                set_alias(session, coll, PREVIOUS_CHAMPION, a)
                set_alias(session, coll, CHAMPION, b)
                set_alias(session, coll, CONTENDER, c)
                for alias, since in ((PREVIOUS_CHAMPION, promoted_at), (CONTENDER, shadow_from)):
                    session.execute(update(ModelAlias.__table__).values(updated_at=since).where(
                        ModelAlias.collection_id == coll.id, ModelAlias.alias == alias))
                items = [str(i) for i in range(40)]  # every one sells at 100: A values 101, B 200, C 150
                for version, status, value in ((b, "published", 200.0), (a, "shadow", 101.0), (c, "shadow", 150.0)):
                    snap = NowcastSnapshot(collection_id=coll.id, model_version_id=version.id, as_of=valued_at,
                                           valued_at=valued_at, n_items=len(items), status=status,
                                           published_at=valued_at)
                    session.add(snap)
                    session.flush()
                    made["snapshots"].append(snap.id)
                    session.add_all([NowcastRow(snapshot_id=snap.id, item_key=i, fair_value=value, p10=0.8 * value,
                                                p90=1.2 * value) for i in items])
                for n, item in enumerate(items):
                    event_id = f"races-monitor-{item}-{time.time_ns()}"
                    session.add(Sale(collection_id=coll.id, event_id=event_id, item_key=item, price=100.0,
                                     ts=valued_at + timedelta(hours=1 + n), content_hash="0" * 64))
                    made["sales"].append(event_id)
            first = lifecycle.run_monitor(settings)
            assert first["rolled_back_to"] == a.version and "shadow" not in first, first
            second = lifecycle.run_monitor(settings)
            # (the shadow's record also carries the numbers it was settled on, for the queue page)
            assert {k: second["shadow"][k] for k in ("contender", "decision")} == {
                "contender": c.version, "decision": "reject"}, second
            with session_scope() as session:
                assert get_alias(session, pipeline.ensure_collection_of(session, settings), CHAMPION).id == a.id
    finally:
        with session_scope() as session:
            session.execute(delete(Sale.__table__).where(Sale.event_id.in_(made["sales"])))
            session.execute(delete(NowcastRow.__table__).where(NowcastRow.snapshot_id.in_(made["snapshots"])))
            session.execute(delete(NowcastSnapshot.__table__).where(NowcastSnapshot.id.in_(made["snapshots"])))
            session.flush()
            session.execute(delete(ModelVersion.__table__).where(ModelVersion.id.in_(made["versions"])))



def last_decision_id() -> int:
    with session_scope() as session:
        return session.exec(select(func.max(PromotionDecision.id))).one() or 0


@contextmanager
def aliases_and_decisions_restored():
    """Later tests of the session see the champion and the decision trail as they were, each
    alias with its own time too (a previous champion restored as set just now would put the
    champion back on probation)."""
    settings = get_settings()
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        aliases_before = {r.alias: (r.model_version_id, r.updated_at) for r in
                          session.exec(select(ModelAlias).where(ModelAlias.collection_id == coll.id)).all()}
    first_decision = last_decision_id()
    try:
        yield
    finally:
        with session_scope() as session:
            coll = pipeline.ensure_collection_of(session, settings)
            session.execute(delete(PromotionDecision.__table__).where(PromotionDecision.id > first_decision))
            session.execute(delete(ModelAlias.__table__).where(ModelAlias.collection_id == coll.id))
            session.add_all([ModelAlias(collection_id=coll.id, alias=alias, model_version_id=version_id,
                                        updated_at=updated_at)
                             for alias, (version_id, updated_at) in aliases_before.items()])


def test_a_newer_shadow_supersedes_the_waiting_one_on_record_and_promoting_it_ends_its_shadow(seeded, outcome):
    settings = get_settings()
    shadow = dataclasses.replace(outcome.decision, decision=gates.SHADOW, reason="better, not by the margin")
    with aliases_and_decisions_restored():
        shadowed = []
        for name in ("first shadow", "second shadow"):
            request_id = new_request(name)
            with session_scope() as session:
                assert requests.claim(session, request_id, "racer", timedelta(minutes=5), 3)
            shadowed.append(training._register_and_decide(
                settings, request_id, "racer", dataclasses.replace(outcome, decision=shadow))["model_version"])
        older, newer = shadowed
        superseded = [d for d in lifecycle.decisions(settings, 10)
                      if d["contender"] == older and d["decision"] == "reject"]
        assert len(superseded) == 1 and f"superseded in shadow by v{newer}" in superseded[0]["reason"]

        lifecycle.operator_promote(newer, "operator takes the shadowed contender")
        with session_scope() as session:
            coll = pipeline.ensure_collection_of(session, settings)
            assert get_alias(session, coll, CHAMPION).version == newer
            assert get_alias(session, coll, CONTENDER) is None  # not judged against itself by the monitor


def test_concurrent_operator_rollbacks_roll_back_once(seeded, outcome):
    settings = get_settings()
    rejected = dataclasses.replace(outcome.decision, decision=gates.REJECT, reason="kept out of the way")
    with session_scope() as session:
        first_champion = get_alias(session, pipeline.ensure_collection_of(session, settings), CHAMPION).version
    with aliases_and_decisions_restored():
        request_id = new_request("a version to roll back from")
        with session_scope() as session:
            assert requests.claim(session, request_id, "racer", timedelta(minutes=5), 3)
        version = training._register_and_decide(settings, request_id, "racer",
                                                 dataclasses.replace(outcome, decision=rejected))["model_version"]
        with session_scope() as session:  # the champion is past its probation: the rollback returns to it
            remove_alias(session, pipeline.ensure_collection_of(session, settings), PREVIOUS_CHAMPION)
        lifecycle.operator_promote(version, "to be rolled back", force=True)
        outcomes: list[str] = []

        def roll_back() -> None:
            try:
                outcomes.append(f"rolled back to v{lifecycle.operator_rollback('at once', settings)['champion']}")
            except LookupError:
                outcomes.append("nothing to roll back")

        threads = [threading.Thread(target=roll_back) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes) == ["nothing to roll back"] * 5 + [f"rolled back to v{first_champion}"]
        rollbacks = [d for d in lifecycle.decisions(settings, 20) if d["decision"] == "rollback"
                     and d["contender"] == version]
        assert len(rollbacks) == 1


def test_the_lifecycle_lock_lets_sales_and_snapshots_be_stored(seeded):
    """The collection lock (a version being numbered and uploaded, an alias being moved) is held
    for as long as a model upload takes. Rows that reference the collection (a sale, a
    snapshot) take a key-share lock on it, which FOR UPDATE would block; FOR NO KEY UPDATE does
    not. A second lifecycle lock still waits."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from storage.registry import lock_collection

    settings = get_settings()
    with session_scope() as holder:
        coll = pipeline.ensure_collection_of(holder, settings)
        lock_collection(holder, coll)
        with session_scope() as other:
            other.exec(text("SET LOCAL lock_timeout = '2s'"))
            report = pipeline.ingest_sales_call(other, [{"event_id": "under-the-lifecycle-lock", "item_id": "77",
                                                         "price": 90.0, "timestamp": "2021-12-30T10:00:00Z"}],
                                                "test", settings)
            assert report.accepted + report.duplicate == 1
        with pytest.raises(OperationalError, match="lock timeout"), session_scope() as rival:
            rival.exec(text("SET LOCAL lock_timeout = '1s'"))
            lock_collection(rival, pipeline.ensure_collection_of(rival, settings))


def test_a_shadow_carries_the_published_time_of_the_snapshot_it_shadows(seeded):
    """The monitor pairs the champion's published values with a shadow's, sale by sale, each the
    last published before the sale: a shadow stamped after the archive would leave the sales in
    between scored against the fresh champion and an older shadow. A nowcast superseded by a
    later one writes no shadow: its values were never served."""
    settings = get_settings()
    with aliases_and_decisions_restored():
        with session_scope() as session:
            coll = pipeline.ensure_collection_of(session, settings)
            set_alias(session, coll, PREVIOUS_CHAMPION, get_alias(session, coll, CHAMPION))  # on probation now
        result = pipeline.nowcast(settings)
        assert result.published and set(result.shadows) == {"previous_champion"}
        with session_scope() as session:
            main = session.get(NowcastSnapshot, result.snapshot_id)
            shadow = session.get(NowcastSnapshot, result.shadows["previous_champion"])
            assert (shadow.status, shadow.published_at) == ("shadow", main.published_at)
        late = pipeline.nowcast(settings, as_of=utcnow() - timedelta(hours=1))
        assert not late.published and late.shadows == {}


def test_the_monitor_asks_again_for_the_nowcast_a_change_of_champion_lost(seeded):
    """A promotion commits, then its nowcast request is lost (the worker died, the broker was
    down): the monitor finds the published values are another model's and says so, and its
    task asks for a nowcast."""
    settings = get_settings()
    with aliases_and_decisions_restored(), session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        champion = get_alias(session, coll, CHAMPION)
        pipeline.nowcast(settings)  # the champion's values published (a test before may have left another's)
        assert lifecycle.run_monitor(settings).get("champion_not_published") is None
        stand_in = ModelVersion(collection_id=coll.id, version=10_000 + champion.version, estimator=champion.estimator,
                                artifact_uri=champion.artifact_uri, sha256=champion.sha256)
        session.add(stand_in)
        session.flush()
        set_alias(session, coll, CHAMPION, stand_in)
        session.commit()
        try:
            found = lifecycle.run_monitor(settings)["champion_not_published"]
            assert found["champion"] == stand_in.version
        finally:
            set_alias(session, coll, CHAMPION, champion)
            session.delete(stand_in)


def test_the_monitor_does_not_roll_back_to_a_model_whose_artifact_is_gone(seeded, monkeypatch):
    """The previous champion's shadow values may come from a worker's memory of it; its artifact
    is read back before the rollback, as an operator's rollback does. A missing one is refused on
    record, and the champion stays."""
    from models import monitor

    settings = get_settings()
    monkeypatch.setattr(monitor, "decide_rollback", lambda *_args: monitor.MonitorDecision(
        rollback=True, reason="worse live (forced by the test)", numbers={}))
    stand_in_id = None
    try:
        with aliases_and_decisions_restored():
            with session_scope() as session:
                coll = pipeline.ensure_collection_of(session, settings)
                champion = get_alias(session, coll, CHAMPION)
                stand_in = ModelVersion(collection_id=coll.id, version=20_000 + champion.version,
                                        estimator=champion.estimator, sha256=champion.sha256,
                                        artifact_uri=champion.artifact_uri + ".gone")
                session.add(stand_in)
                session.flush()
                stand_in_id = stand_in.id
                set_alias(session, coll, PREVIOUS_CHAMPION, stand_in)  # on probation since now
            out = lifecycle.run_monitor(settings)
            assert "rolled_back_to" not in out and "refused" in out["rollback_refused"]
            with session_scope() as session:
                coll = pipeline.ensure_collection_of(session, settings)
                assert get_alias(session, coll, CHAMPION).id == champion.id
                # It can never be rolled back to: its probation ends, so the next run records nothing again.
                assert get_alias(session, coll, PREVIOUS_CHAMPION) is None
            refusal = lifecycle.decisions(settings, 1)[0]
            assert (refusal["decision"], refusal["by"]) == ("reject", "monitor")
            again = lifecycle.run_monitor(settings)
            assert "rollback_refused" not in again and lifecycle.decisions(settings, 1)[0] == refusal
    finally:
        with session_scope() as session:
            if stand_in_id is not None:
                session.delete(session.get(ModelVersion, stand_in_id))


def test_a_collection_without_sales_fails_its_request_at_once_with_the_reason(seeded):
    """It used to raise AttributeError on NaT in every attempt, each retried after a backoff."""
    from storage.ingest import add_items, ensure_collection

    settings = get_settings().for_collection("no-sales-yet")
    with session_scope() as session:
        add_items(session, ensure_collection(session, "no-sales-yet"), [{"item_key": "1"}, {"item_key": "2"}])
    request_id = lifecycle.record_request(settings, f"races:no-sales:{time.time_ns()}", "no sales", {},
                                           QUICK).request_id
    with pytest.raises(lifecycle.NothingToTrain, match="no clean sale"):
        lifecycle.train_request(request_id, "worker-a", settings)
    row = request_row(request_id)
    assert (row.state, row.attempts) == (requests.FAILED, 1) and "NothingToTrain" in row.error


def _at_once(monkeypatch, first, second) -> tuple:
    """Two operators' calls of loops.set_paused in sessions of their own: `first` has made its write
    and holds its transaction open until `second` waits on a lock, then commits. Their answers."""
    from sqlalchemy import text

    from fairvalue.lifecycle import loops
    from storage import db

    written, release = threading.Event(), threading.Event()
    answers: dict[str, object] = {}

    @contextmanager
    def held_open():
        with db.session_scope() as session:
            yield session
            written.set()
            release.wait(30)

    monkeypatch.setattr(loops, "session_scope",
                        lambda: held_open() if threading.current_thread().name == "first" else db.session_scope())

    def call(name, args) -> None:
        answers[name] = loops.set_paused(*args[:3], by=args[3])

    threads = [threading.Thread(target=call, args=("first", first), name="first"),
               threading.Thread(target=call, args=("second", second), name="second")]
    threads[0].start()
    assert written.wait(30)
    threads[1].start()
    try:
        for _ in range(200):  # until the second call waits on the first's row
            with db.get_engine().connect() as watch:  # a connection each time: pg_stat_activity is per transaction
                if watch.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                      "AND datname = current_database() AND pid <> pg_backend_pid()")).scalar():
                    break
            time.sleep(0.05)
    finally:
        release.set()
        for thread in threads:
            thread.join(30)
    return answers["first"], answers["second"]


def test_two_operators_pausing_a_loop_at_once_keep_the_first_pause_and_tell_the_second(database, monkeypatch):
    """Both read the loop running and wrote their pause: the second's write waited on the first's
    row and then replaced its reason, time and author, and both were answered "paused". Now one
    conditional update pauses it; the other is answered with the pause that stands. Two resumes at
    once: one resumes, the other is told it was not paused."""
    from fairvalue.lifecycle import loops
    from storage.tables import LoopState

    loop = loops.POLICY_LOOP
    loops.set_paused(loop, False)
    try:
        first, second = _at_once(monkeypatch, (loop, True, "drift numbers look wrong", "alice@ops"),
                                 (loop, True, "nightly upgrade", "bob@ops"))
        assert first is None  # this call paused it
        assert second is not None and (second.paused, second.reason, second.changed_by) == (
            True, "drift numbers look wrong", "alice@ops")
        with session_scope() as session:
            stored = session.get(LoopState, loop)
            assert (stored.paused, stored.reason, stored.changed_by) == (True, "drift numbers look wrong", "alice@ops")
            assert stored.updated_at == second.updated_at  # "already paused since" the first pause's time
        first, second = _at_once(monkeypatch, (loop, False, "", "alice@ops"), (loop, False, "", "bob@ops"))
        assert first is None and second is not None and second.paused is False
        with session_scope() as session:
            assert session.get(LoopState, loop).changed_by == "alice@ops"
    finally:
        monkeypatch.undo()
        loops.set_paused(loop, False)

"""The monitor and the retrain policy on an in-memory SQLite market (fairvalue/lifecycle): what a
store that cannot be read does to a rollback or a shadow's promotion, and which values the policy's
live error scores."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from fairvalue import lifecycle, pipeline
from fairvalue.lifecycle import monitor as monitor_loop
from fairvalue.lifecycle import operators, training_requests
from fairvalue.lifecycle import policy as policy_loop
from fairvalue.settings import get_settings
from storage import snapshots
from storage.artifacts import ArtifactError, ArtifactMissing, LocalStore
from storage.ingest import ensure_collection
from storage.registry import CHAMPION, CONTENDER, PREVIOUS_CHAMPION, get_alias, set_alias
from storage.tables import ModelAlias, ModelVersion, NowcastRow, NowcastSnapshot, PromotionDecision, Sale, utcnow
from tests.builders import sessions_on

NOW = utcnow()
KEYS = [str(i) for i in range(40)]  # more sales than the monitor's and the policy's minimum


@pytest.fixture
def market(memory_engine, monkeypatch, tmp_path):
    """(engine, store): the settings' collection on `memory_engine`, its artifacts in a local store
    under tmp_path, as the monitor, the policy and the operators read them."""
    for module in (monitor_loop, policy_loop, training_requests, operators):
        sessions_on(monkeypatch, module, memory_engine)
    store = LocalStore(tmp_path / "artifacts")
    monkeypatch.setattr(monitor_loop, "get_store", lambda settings=None: store)
    monkeypatch.setattr(operators, "get_store", lambda settings=None: store)
    with Session(memory_engine) as session:
        ensure_collection(session, get_settings().collection)
        session.commit()
    return memory_engine, store


def _versions(session: Session, store: LocalStore, n: int) -> list[ModelVersion]:
    coll = ensure_collection(session, get_settings().collection)
    made = []
    for version in range(1, n + 1):
        stored = store.put(f"models/{coll.slug}/v{version}.joblib", f"model {version}".encode())
        made.append(ModelVersion(collection_id=coll.id, version=version, estimator="test",
                                 artifact_uri=stored.uri, sha256=stored.sha256, created_at=NOW - timedelta(days=1)))
    session.add_all(made)
    session.flush()
    return made


def _snapshot(session: Session, version: ModelVersion, published_at, value: float, status=snapshots.PUBLISHED):
    """A snapshot of `version` valuing every item at `value`."""
    snap = NowcastSnapshot(collection_id=version.collection_id, model_version_id=version.id, as_of=published_at,
                           n_items=len(KEYS), status=status, published_at=published_at)
    session.add(snap)
    session.flush()
    session.add_all([NowcastRow(snapshot_id=snap.id, item_key=key, fair_value=value, p10=value * 0.8,
                                p90=value * 1.2) for key in KEYS])


def _sales(session: Session, collection_id: int, at, tag: str) -> None:
    """One sale of every item at 100, a minute apart from `at` back."""
    session.add_all([Sale(collection_id=collection_id, event_id=f"{tag}-{key}", item_key=key,
                          ts=at - timedelta(minutes=i), price=100.0,
                          content_hash=hashlib.sha256(f"{tag}-{key}".encode()).hexdigest())
                     for i, key in enumerate(KEYS)])


def _alias_set_ago(session: Session, alias: str, ago: timedelta) -> None:
    session.execute(update(ModelAlias).where(ModelAlias.alias == alias).values(updated_at=NOW - ago))


def _decisions(engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(d.decision, d.decided_by) for d in session.exec(select(PromotionDecision)).all()]


def _aliases(engine) -> dict[str, int | None]:
    with Session(engine) as session:
        coll = ensure_collection(session, get_settings().collection)
        return {alias: getattr(get_alias(session, coll, alias), "version", None)
                for alias in (CHAMPION, PREVIOUS_CHAMPION, CONTENDER)}


def _store_down(monkeypatch, store: LocalStore) -> None:
    """The store does not answer (an S3 timeout, an NFS hiccup): ArtifactError, as its get raises it."""
    def down(uri, sha256):
        raise ArtifactError(f"cannot read {uri}: Connect timeout on endpoint URL") from TimeoutError("timed out")

    monkeypatch.setattr(store, "get", down)


# --- the monitor: a store that cannot be read is not a refusal -------------------------------


@pytest.fixture
def bad_promotion(market):
    """v2 promoted over v1 two days ago, valuing every sale at 3x; v1's shadow values them right."""
    engine, store = market
    with Session(engine) as session:
        v1, v2 = _versions(session, store, 2)
        coll = ensure_collection(session, get_settings().collection)
        set_alias(session, coll, CHAMPION, v2)
        set_alias(session, coll, PREVIOUS_CHAMPION, v1)
        _alias_set_ago(session, PREVIOUS_CHAMPION, timedelta(days=2))
        _snapshot(session, v2, NOW - timedelta(days=1, hours=12), 300.0)
        _snapshot(session, v1, NOW - timedelta(days=1, hours=12), 100.0, status=snapshots.SHADOW)
        _sales(session, coll.id, NOW - timedelta(days=1), "after")
        session.commit()
    return engine, store


def test_a_store_that_cannot_be_read_defers_the_rollback_to_the_next_run(bad_promotion, monkeypatch):
    """It used to record the monitor's reject of v1 ("artifact refused") and drop the previous
    champion's alias: v2 stayed for good, and `fairvalue rollback` had nothing to roll back to."""
    engine, store = bad_promotion
    with monkeypatch.context() as blip:
        _store_down(blip, store)
        out = lifecycle.run_monitor(now=NOW)
    assert out["probation"]["rollback"] is True
    assert "rolled_back_to" not in out and "rollback_refused" not in out
    assert "Connect timeout" in out["rollback_deferred"] and "the next run tries again" in out["rollback_deferred"]
    assert _aliases(engine) == {CHAMPION: 2, PREVIOUS_CHAMPION: 1, CONTENDER: None}
    assert _decisions(engine) == []  # nothing on record against v1

    back = lifecycle.run_monitor(now=NOW)  # the store answers again
    assert back["rolled_back_to"] == 1 and "rollback_deferred" not in back
    assert _aliases(engine)[CHAMPION] == 1
    assert _decisions(engine) == [("rollback", "monitor")]


PAST_PROBATION = timedelta(days=get_settings().probation_days)  # from NOW: v2 was promoted two days before


def _deferred(store, monkeypatch, now=NOW) -> dict:
    """A monitor run while the store cannot be read."""
    with monkeypatch.context() as blip:
        _store_down(blip, store)
        return lifecycle.run_monitor(now=now)


def test_a_rollback_deferred_past_the_probation_is_carried_out_once_the_store_answers(bad_promotion, monkeypatch):
    """The store stayed down until v2's probation ended: the next run no longer judged v2, and the
    rollback the monitor had decided never happened. It is kept due until it is carried out."""
    engine, store = bad_promotion
    decided = _deferred(store, monkeypatch)
    assert decided["probation"]["rollback"] is True and "rollback_deferred" in decided
    # Still in probation, the decision kept due stands: the live errors are not read and weighed again.
    within = _deferred(store, monkeypatch, now=NOW + timedelta(hours=1))
    assert "probation" not in within and within["rollback_due"]["champion"] == 2 and "rollback_deferred" in within
    still_down = _deferred(store, monkeypatch, now=NOW + PAST_PROBATION)
    assert "probation" not in still_down and "Connect timeout" in still_down["rollback_deferred"]
    assert _aliases(engine) == {CHAMPION: 2, PREVIOUS_CHAMPION: 1, CONTENDER: None}

    back = lifecycle.run_monitor(now=NOW + PAST_PROBATION + timedelta(hours=1))
    assert back["rolled_back_to"] == 1 and "rollback_deferred" not in back
    assert back["rollback_due"]["champion"] == 2 and back["rollback_due"]["previous"] == 1
    assert _aliases(engine) == {CHAMPION: 1, PREVIOUS_CHAMPION: None, CONTENDER: None}
    with Session(engine) as session:  # recorded with the judgement that decided it, and when
        (rollback,) = session.exec(select(PromotionDecision)).all()
    assert (rollback.decision, rollback.decided_by) == ("rollback", "monitor")
    assert rollback.reason.startswith(decided["probation"]["reason"]) and "decided at" in rollback.reason
    assert rollback.numbers["champion_mape"] == decided["probation"]["numbers"]["champion_mape"]
    assert lifecycle.run_monitor(now=NOW + PAST_PROBATION + timedelta(hours=2)) == {}  # done: nothing due


def test_a_rollback_kept_due_is_refused_on_record_when_the_artifact_is_gone(bad_promotion, monkeypatch):
    engine, store = bad_promotion
    _deferred(store, monkeypatch)
    with Session(engine) as session:
        v1 = session.exec(select(ModelVersion).where(ModelVersion.version == 1)).one()
    (store.root / f"models/{get_settings().collection}/v1-{v1.sha256}.joblib").unlink()
    out = lifecycle.run_monitor(now=NOW + PAST_PROBATION)
    assert out["rollback_refused"].startswith("artifact of version 1 refused:")
    assert _aliases(engine) == {CHAMPION: 2, PREVIOUS_CHAMPION: None, CONTENDER: None}
    assert _decisions(engine) == [("reject", "monitor")]
    assert lifecycle.run_monitor(now=NOW + PAST_PROBATION + timedelta(hours=1)) == {}  # refused: nothing due


def test_a_rollback_kept_due_is_moot_once_an_operator_moved_the_champion(bad_promotion, monkeypatch):
    """The operator promoted v3 and then put v2 back on purpose while the rollback waited: the
    aliases are v2 and v1 again, as the monitor judged them, but the rollback of then is not
    carried out over the operator's choice."""
    engine, store = bad_promotion
    _deferred(store, monkeypatch)
    with Session(engine) as session:
        coll = ensure_collection(session, get_settings().collection)
        stored = store.put(f"models/{coll.slug}/v3.joblib", b"model 3")
        session.add(ModelVersion(collection_id=coll.id, version=3, estimator="test", artifact_uri=stored.uri,
                                 sha256=stored.sha256))
        session.commit()
    lifecycle.operator_promote(3, "trying v3")
    lifecycle.operator_promote(2, "v2 after all")
    assert _aliases(engine) == {CHAMPION: 2, PREVIOUS_CHAMPION: 1, CONTENDER: None}
    # Past the probation v2's return to champion started (as utcnow, not NOW, set it).
    out = lifecycle.run_monitor(now=utcnow() + PAST_PROBATION + timedelta(hours=1))
    assert "rolled_back_to" not in out and "rollback_due" not in out
    assert _aliases(engine)[CHAMPION] == 2
    assert _decisions(engine) == [("promote", "operator"), ("promote", "operator")]


def test_a_rollback_kept_due_for_another_pair_gives_way_in_one_transaction(market):
    """The first decision of a pair stands; the aliases moved without a promotion (set directly) and
    the new pair's rollback is deferred in the run that finds the old one moot: the new one is kept."""
    from storage.decisions import due_rollback, forget_due_rollback, keep_due_rollback

    engine, store = market
    with Session(engine) as session:
        v1, v2, v3 = _versions(session, store, 3)
        coll = ensure_collection(session, get_settings().collection)
        keep_due_rollback(session, coll, v2, v1, "v2 worse", {"n": 40})
        session.commit()
        assert keep_due_rollback(session, coll, v2, v1, "v2 worse again", {}).reason == "v2 worse"  # the first stands
        forget_due_rollback(session, coll)
        keep_due_rollback(session, coll, v3, v1, "v3 worse", {"n": 41})
        session.commit()
        due = due_rollback(session, coll)
        assert (due.champion_version_id, due.previous_version_id, due.reason) == (v3.id, v1.id, "v3 worse")


@pytest.mark.parametrize("spoil", ["missing", "corrupt"])
def test_an_artifact_gone_or_corrupt_is_still_refused_on_record(bad_promotion, spoil):
    engine, store = bad_promotion
    with Session(engine) as session:
        v1 = session.exec(select(ModelVersion).where(ModelVersion.version == 1)).one()
        path = store.root / f"models/{get_settings().collection}/v1-{v1.sha256}.joblib"
    if spoil == "missing":
        path.unlink()
    else:
        path.write_bytes(b"tampered")
    out = lifecycle.run_monitor(now=NOW)
    assert "rolled_back_to" not in out and "rollback_deferred" not in out
    assert out["rollback_refused"].startswith("artifact of version 1 refused:")
    assert ("sha256 mismatch" if spoil == "corrupt" else "No such file") in out["rollback_refused"]
    assert _aliases(engine) == {CHAMPION: 2, PREVIOUS_CHAMPION: None, CONTENDER: None}
    assert _decisions(engine) == [("reject", "monitor")]


def test_a_local_artifact_gone_is_missing_and_one_unreadable_is_the_store_s_trouble(tmp_path):
    """The store names a missing artifact (ArtifactMissing), which the monitor refuses on record; any
    other error of the store (here a folder where the file should be) is its trouble, not the version's.
    S3's side is in tests/integration/test_storage.py."""
    from storage.artifacts import ArtifactMissing, LocalStore

    store = LocalStore(tmp_path)
    with pytest.raises(ArtifactMissing):
        store.get((tmp_path / "gone.joblib").as_uri(), "0" * 64)
    (tmp_path / "folder.joblib").mkdir()
    with pytest.raises(ArtifactError) as raised:
        store.get((tmp_path / "folder.joblib").as_uri(), "0" * 64)
    assert not isinstance(raised.value, ArtifactMissing)


def test_a_shadow_that_proved_better_stays_in_the_shadow_while_the_store_cannot_be_read(market, monkeypatch):
    """It used to be rejected on record by the monitor, and its alias removed: a contender that
    beat the champion live was lost to a store blip."""
    engine, store = market
    with Session(engine) as session:
        v1, v2 = _versions(session, store, 2)
        coll = ensure_collection(session, get_settings().collection)
        set_alias(session, coll, CHAMPION, v1)
        set_alias(session, coll, CONTENDER, v2)
        _alias_set_ago(session, CONTENDER, timedelta(days=4))  # past its shadow days (3)
        _snapshot(session, v1, NOW - timedelta(days=3), 150.0)
        _snapshot(session, v2, NOW - timedelta(days=3), 100.0, status=snapshots.SHADOW)
        _sales(session, coll.id, NOW - timedelta(days=1), "shadowed")
        session.commit()
    with monkeypatch.context() as blip:
        _store_down(blip, store)
        out = lifecycle.run_monitor(now=NOW)
    assert out["shadow"]["decision"] == "deferred" and "Connect timeout" in out["shadow"]["error"]
    assert _aliases(engine) == {CHAMPION: 1, PREVIOUS_CHAMPION: None, CONTENDER: 2}
    assert _decisions(engine) == []

    back = lifecycle.run_monitor(now=NOW)
    assert back["shadow"]["decision"] == "promote"
    assert _aliases(engine) == {CHAMPION: 2, PREVIOUS_CHAMPION: 1, CONTENDER: None}
    assert _decisions(engine) == [("promote", "monitor")]


def test_an_operator_s_rollback_with_the_store_down_is_refused_with_nothing_on_record(bad_promotion, monkeypatch,
                                                                                       caplog):
    engine, store = bad_promotion
    _store_down(monkeypatch, store)
    # The refusal says what happened; the store's own words (its endpoint) go to the log only.
    refusal = "nothing changed: the artifact of version 1 cannot be read from the artifact store now"
    with pytest.raises(lifecycle.ArtifactRefused, match=refusal) as refused:
        lifecycle.operator_rollback("v2 is worse live")
    assert "Connect timeout" not in str(refused.value) and "Connect timeout" in caplog.text
    assert _aliases(engine) == {CHAMPION: 2, PREVIOUS_CHAMPION: 1, CONTENDER: None}
    assert _decisions(engine) == []


# --- the policy: the champion's own live error; a drift report the store failed ---------------


@pytest.fixture
def no_drift(monkeypatch):
    def not_measured(settings=None):
        raise LookupError("drift not measured in this test")

    monkeypatch.setattr(pipeline, "drift", not_measured)


def test_the_policy_scores_the_champion_s_own_values_published_or_shadowed(market, no_drift):
    """v2 was champion last week and valued every sale at 3x; v1, rolled back to, valued the same
    sales right in its shadow, and those after it as champion. The policy used to score every
    published snapshot, whichever model made it, and filed a live_mape retrain for v2's errors."""
    engine, store = market
    with Session(engine) as session:
        v1, v2 = _versions(session, store, 2)
        coll = ensure_collection(session, get_settings().collection)
        _snapshot(session, v2, NOW - timedelta(days=6), 300.0)
        _snapshot(session, v1, NOW - timedelta(days=6), 100.0, status=snapshots.SHADOW)
        _snapshot(session, v1, NOW - timedelta(days=2), 100.0)
        _sales(session, coll.id, NOW - timedelta(days=5), "before-rollback")
        _sales(session, coll.id, NOW - timedelta(days=1), "after-rollback")
        set_alias(session, coll, CHAMPION, v1)
        session.commit()
    outcome = lifecycle.run_policy(now=NOW)
    assert (outcome.retrain, outcome.reasons) == (False, [])
    # Both weeks' sales, against v1's values: its shadow ones before the rollback count too.
    assert (outcome.numbers["live_n"], outcome.numbers["live_mape"]) == (80, 0.0)


@pytest.mark.parametrize(("failure", "recorded"), [
    (ArtifactError, "the champion's model cannot be read from the artifact store now; retry later"),
    (ArtifactMissing, "the champion's model is gone from the artifact store; an operator must restore it"),
])
def test_a_drift_report_the_store_failed_is_recorded_and_the_policy_still_decides(market, monkeypatch, failure,
                                                                                   recorded):
    """An ArtifactError from the drift report (the champion's artifact not read) used to fail the
    whole run: no retrain although the champion's age called for one. It is recorded as why, but
    not in the store's words: the run's numbers and notes, and the request's trigger, are public
    (GET /v1/queue, /training-requests), and those named the store's endpoint, bucket and key."""
    engine, store = market
    with Session(engine) as session:
        (v1,) = _versions(session, store, 1)
        v1.created_at = NOW - timedelta(days=9)
        set_alias(session, ensure_collection(session, get_settings().collection), CHAMPION, v1)
        session.commit()

    def store_down(settings=None):
        raise failure('cannot read s3://artifacts/models/v1.joblib: Read timeout on endpoint URL: "http://10.0.0.5"')

    monkeypatch.setattr(pipeline, "drift", store_down)
    outcome = lifecycle.run_policy(now=NOW)
    assert outcome.retrain and outcome.reasons == ["champion is 9.0 days old > 7"]
    assert outcome.new_request and outcome.request_id is not None
    assert outcome.numbers["drift_error"] == recorded and f"drift summary error: {recorded}" in outcome.notes
    for detail in ("s3://", "10.0.0.5", "endpoint"):  # the store's words are logged, not recorded
        assert detail not in f"{outcome.numbers} {outcome.notes}", detail


def test_a_failed_training_s_error_is_its_type_alone_to_a_reader_without_a_token(market, monkeypatch):
    """A training that failed on the artifact store recorded the store's words, and
    GET /v1/training-requests and the /queue page showed them whole to any reader: its endpoint,
    bucket and key. An operator's read keeps them."""
    from fairvalue import model_reads
    from storage.tables import TrainingRequest

    engine, _ = market
    sessions_on(monkeypatch, model_reads, engine)
    error = ('ArtifactError: cannot write s3://fairvalue/models/v2-ab.joblib: Could not connect to the endpoint '
             'URL: "http://10.0.0.5:9000/fairvalue/models/v2-ab.joblib"')
    with Session(engine) as session:
        coll = ensure_collection(session, get_settings().collection)
        session.add(TrainingRequest(collection_id=coll.id, idempotency_key="failed-on-the-store", state="failed",
                                    error=error))
        session.commit()
    (public,) = model_reads.training_requests(people=False)["training_requests"]
    (operator,) = model_reads.training_requests(people=True)["training_requests"]
    assert (public["error"], operator["error"]) == ("ArtifactError", error)


# --- an operator's rollback retried: recognised by its Idempotency-Key ------------------------


def test_a_rollback_retried_with_its_idempotency_key_answers_the_first_unchanged(bad_promotion):
    """A client whose answer was lost retries: it used to get "nothing to roll back to" (the API's
    409), as if the rollback had failed, where a retried promote answers changed false."""
    engine, _ = bad_promotion
    first = lifecycle.operator_rollback("v2 is worse live", idempotency_key="rollback-1")
    assert first == {"champion": 1, "rolled_back_from": 2, "changed": True}
    again = lifecycle.operator_rollback("v2 is worse live", idempotency_key="rollback-1")
    assert again == {"champion": 1, "rolled_back_from": 2, "changed": False, "replayed": True}
    assert _aliases(engine)[CHAMPION] == 1 and _decisions(engine) == [("rollback", "operator")]

    with pytest.raises(lifecycle.IdempotencyKeyReused, match="already names the rollback"):
        lifecycle.operator_rollback("another reason", idempotency_key="rollback-1")
    # Without the key (or with another) a second rollback cannot be told from a retry: nothing to roll back to.
    for key in (None, "rollback-2"):
        with pytest.raises(LookupError, match="nothing to roll back to"):
            lifecycle.operator_rollback("v2 is worse live", idempotency_key=key)

    lifecycle.operator_promote(2, "v2 after all")  # the champion moved since: the replay says so
    moved = lifecycle.operator_rollback("v2 is worse live", idempotency_key="rollback-1")
    assert moved == {"champion": 1, "rolled_back_from": 2, "changed": False, "replayed": True, "champion_now": 2}
    assert _aliases(engine)[CHAMPION] == 2

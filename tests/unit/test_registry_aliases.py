"""storage.registry.promote on SQLite: who a rollback goes back to after promotions in a row."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from storage.registry import CHAMPION, PREVIOUS_CHAMPION, get_alias, promote
from storage.tables import ModelAlias, ModelVersion, utcnow

PROBATION_DAYS = 7


def _versions(session, coll, n: int) -> list[ModelVersion]:
    versions = [ModelVersion(collection_id=coll.id, version=v, estimator="test", artifact_uri=f"v{v}", sha256="0")
                for v in range(1, n + 1)]
    session.add_all(versions)
    session.commit()
    return versions


def _aliases(session, coll) -> tuple[int, int | None]:
    previous = get_alias(session, coll, PREVIOUS_CHAMPION)
    return get_alias(session, coll, CHAMPION).version, previous.version if previous else None


def _age_previous_alias(session, coll, days: float) -> None:
    session.execute(update(ModelAlias).where(ModelAlias.collection_id == coll.id,
                                             ModelAlias.alias == PREVIOUS_CHAMPION)
                    .values(updated_at=utcnow() - timedelta(days=days)))


def test_a_champion_replaced_on_probation_leaves_the_proven_one_to_roll_back_to(sqlite_market):
    session, coll = sqlite_market
    v1, v2, v3, v4 = _versions(session, coll, 4)
    promote(session, coll, v1, PROBATION_DAYS)
    promote(session, coll, v2, PROBATION_DAYS)
    assert _aliases(session, coll) == (2, 1)
    _age_previous_alias(session, coll, 3)  # v2 three days into its probation against v1

    promote(session, coll, v3, PROBATION_DAYS)
    assert _aliases(session, coll) == (3, 1)  # not v2, which never proved itself live
    since = session.get(ModelAlias, (coll.id, PREVIOUS_CHAMPION)).updated_at
    assert utcnow() - since < timedelta(minutes=1)  # v3's probation starts now

    _age_previous_alias(session, coll, PROBATION_DAYS + 1)  # v3 passed its probation
    promote(session, coll, v4, PROBATION_DAYS)
    assert _aliases(session, coll) == (4, 3)


def test_promoting_the_previous_champion_during_probation_returns_to_it(sqlite_market):
    session, coll = sqlite_market
    v1, v2 = _versions(session, coll, 2)
    promote(session, coll, v1, PROBATION_DAYS)
    promote(session, coll, v2, PROBATION_DAYS)
    promote(session, coll, v1, PROBATION_DAYS)
    assert _aliases(session, coll) == (1, 2)
    promote(session, coll, v2)  # without a probation: the replaced champion is the previous one
    assert _aliases(session, coll) == (2, 1)

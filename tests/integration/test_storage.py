"""Storage against the real servers: S3 objects and the schema migrations."""

from __future__ import annotations

import pytest

from storage.artifacts import ArtifactError, ArtifactMissing, IntegrityError

pytestmark = pytest.mark.integration


def test_s3_round_trip_and_tamper_detection(s3):
    obj = s3.put("tests/blob.bin", b"abc" * 1000)
    assert obj.uri.startswith("s3://fairvalue-test/artifacts/tests/blob-")
    assert s3.get(obj.uri, obj.sha256) == b"abc" * 1000
    key = obj.uri.split("/", 3)[3]
    s3.client.put_object(Bucket="fairvalue-test", Key=key, Body=b"evil")
    with pytest.raises(IntegrityError):
        s3.get(obj.uri, obj.sha256)


def test_s3_names_a_missing_artifact_apart_from_its_other_errors(s3):
    """A key that is not there is ArtifactMissing (the monitor refuses its version on record); a
    bucket that is not there is the store's trouble, not the version's."""
    with pytest.raises(ArtifactMissing):
        s3.get("s3://fairvalue-test/artifacts/models/gone.joblib", "0" * 64)
    with pytest.raises(ArtifactError) as raised:
        s3.get("s3://no-such-bucket/models/v1.joblib", "0" * 64)
    assert not isinstance(raised.value, ArtifactMissing)


def test_migrations_match_the_table_definitions(database):
    """Autogenerate against the migrated database finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import storage.tables  # noqa: F401
    from storage.db import get_engine

    with get_engine().connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_a_training_request_asked_again_takes_no_id(database):
    """A key asked for again is found, not inserted: on PostgreSQL an insert that conflicts still
    takes a number from the id sequence, and the next request's id skipped it (storage.requests.record)."""
    from sqlmodel import Session

    from storage import ingest, requests
    from storage.db import get_engine

    with Session(get_engine()) as session:  # rolled back: no queued request is left for a later sweep
        coll = ingest.ensure_collection(session, "cryptopunks")
        first, new = requests.record(session, coll, "ids-test:first", "ids test")
        again, new_again = requests.record(session, coll, "ids-test:first", "ids test, asked again")
        second, _ = requests.record(session, coll, "ids-test:second", "ids test")
        ids = first.id, again.id, second.id
        session.rollback()
    assert (new, new_again) == (True, False)
    assert ids == (ids[0], ids[0], ids[0] + 1)


def test_an_upgrade_leaves_the_snapshots_before_it_read_as_they_were(tmp_path):
    """Rows stored before migration 0019 recorded no signal basis or deviation, and are not
    backfilled (it could only derive them as readers do): their snapshot says so, its readers
    derive them as before, and its rebuilt archive keeps the columns it was archived with."""
    import math

    from sqlmodel import Session

    from fairvalue.item_reads import signal_prices
    from storage.migrate import upgrade
    from storage.snapshots import read_published, row_columns, snapshot_values
    from storage.tables import Collection, NowcastSnapshot
    from tests.realparts import database_before

    url, engine = database_before("0018", tmp_path, [])
    _store_a_published_snapshot(engine)
    upgrade(url, "head")
    with Session(engine) as session:
        assert session.get(NowcastSnapshot, 1).signal_prices_recorded is False
        assert tuple(snapshot_values(session, 1).columns) == row_columns(False)
        values = sorted(read_published(session, session.get(Collection, 1)), key=lambda v: v.item_key)
    engine.dispose()
    (basis_7, deviation_7), (basis_8, deviation_8) = signal_prices(values)  # derived, at the reader's thresholds
    assert (basis_7, deviation_7, basis_8) == ("last_sale", -0.15, None) and math.isnan(deviation_8)


def _store_a_published_snapshot(engine) -> None:
    """A published snapshot of two rows, written as a database at 0016..0018 holds one: item 7 sold
    at 85 against a value of 100 (BUY), item 8 never sold."""
    import sqlalchemy as sa

    at = "2021-12-31 00:00:00.000000"
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO model_versions (id, collection_id, version, estimator, artifact_uri, sha256, params, metrics, "
            "n_train, code_version, created_at) VALUES (1, 1, 1, 'gbm', 'x', 'h', '{}', '{}', 0, '', :at)"), {"at": at})
        conn.execute(sa.text("INSERT INTO nowcast_snapshots (id, collection_id, model_version_id, as_of, "
                             "valued_at, n_items, status, created_at) VALUES (1, 1, 1, :at, :at, 2, 'published', :at)"),
                     {"at": at})
        conn.execute(sa.text("INSERT INTO published_snapshots (collection_id, snapshot_id, published_at) "
                             "VALUES (1, 1, :at)"), {"at": at})
        conn.execute(sa.text("INSERT INTO nowcast_rows (snapshot_id, item_key, fair_value, signal, last_price, "
                             "last_sale_at) VALUES (1, '7', 100, 'BUY', 85, '2021-12-30 00:00:00.000000'), "
                             "(1, '8', 100, 'HOLD', NULL, NULL)"))


def test_the_migrations_downgrade_and_upgrade_again_with_a_snapshot_stored(tmp_path):
    """alembic downgrade from head to 0016 and back, then to nothing, on SQLite with a published
    snapshot's rows: a batch migration rebuilds a table, and dropping the old one failed on the
    foreign keys of the rows referring to it (0017's downgrade did, and 0012's). storage/migrations/
    env.py migrates SQLite with foreign keys off, and checks them after."""
    import sqlalchemy as sa
    from alembic import command

    from storage.migrate import alembic_config, upgrade
    from tests.realparts import database_before

    url, engine = database_before("0016", tmp_path, [])
    _store_a_published_snapshot(engine)
    upgrade(url, "head")
    command.downgrade(alembic_config(url), "0016")
    upgrade(url, "head")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT item_key, fair_value FROM nowcast_rows ORDER BY item_key")).all()
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    assert [tuple(r) for r in rows] == [("7", 100.0), ("8", 100.0)]
    assert version == _head_revision()
    command.downgrade(alembic_config(url), "base")
    assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    engine.dispose()


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    from storage.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def test_a_row_pointing_nowhere_before_an_upgrade_does_not_block_it(tmp_path):
    """storage/migrations/env.py checks SQLite's foreign keys after a migration it ran with them off.
    A row that pointed nowhere before (written with foreign keys off, as the sqlite3 shell does) is
    not the migration's doing: every upgrade failed on it, with nothing to migrate too."""
    import sqlite3

    from storage.migrate import upgrade
    from tests.realparts import database_before

    url, engine = database_before("0020", tmp_path, [])
    engine.dispose()
    shell = sqlite3.connect(tmp_path / "old.db")  # foreign keys off, the shell's default
    shell.execute("INSERT INTO promotion_decisions (collection_id, decision, decided_by, reason, numbers, created_at, "
                  "contender_version_id) VALUES (1, 'reject', 'operator', 'x', '{}', '2026-01-01 00:00:00', 999)")
    shell.commit()
    shell.close()
    upgrade(url, "head")
    upgrade(url, "head")  # nothing to migrate
    assert sqlite3.connect(tmp_path / "old.db").execute("SELECT version_num FROM alembic_version").fetchone() == (
        _head_revision(),)

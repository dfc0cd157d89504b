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

import pytest

from storage.artifacts import ArtifactError, IntegrityError, LocalStore, content_key, store_from_url


def test_put_get_round_trip_is_content_addressed(tmp_path):
    store = LocalStore(tmp_path)
    a = store.put("models/x/v1.joblib", b"hello")
    again = store.put("models/x/v1.joblib", b"hello")
    assert a == again
    assert a.uri.endswith(f"v1-{a.sha256}.joblib")
    assert store.get(a.uri, a.sha256) == b"hello"


def test_a_store_under_a_path_with_spaces_reads_back_what_it_wrote(tmp_path):
    store = LocalStore(tmp_path / "My Projects" / "fairvalue é")
    stored = store.put("models/x/v1.joblib", b"hello")
    assert "%20" in stored.uri  # a file URI, percent-encoded
    assert store.get(stored.uri, stored.sha256) == b"hello"


def test_a_changed_object_is_refused(tmp_path):
    store = LocalStore(tmp_path)
    obj = store.put("m.joblib", b"model bytes")
    (tmp_path / content_key("m.joblib", obj.sha256)).write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        store.get(obj.uri, obj.sha256)


def test_unwritable_store_reports_clearly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ArtifactError, match="cannot write artifact"):
        LocalStore(blocker).put("a/b.bin", b"x")


def test_store_from_url_kinds(tmp_path):
    assert isinstance(store_from_url(str(tmp_path)), LocalStore)
    assert isinstance(store_from_url(tmp_path.as_uri()), LocalStore)
    with pytest.raises(ValueError, match="unsupported"):
        store_from_url("ftp://host/x")


def test_s3_budgets_reach_the_client():
    """The patient budget for calls that may wait, the short one for the nowcast's archive:
    one client construction, two botocore configs."""
    from fairvalue.settings import Settings
    from storage.artifacts import get_store

    settings = Settings(artifacts_url="s3://bucket/prefix", s3_endpoint_url="http://127.0.0.1:9")
    patient, short = get_store(settings).client.meta.config, get_store(settings, short_budget=True).client.meta.config
    assert (patient.connect_timeout, patient.read_timeout, patient.retries["total_max_attempts"]) == (5, 30, 4)
    assert (short.connect_timeout, short.read_timeout, short.retries["total_max_attempts"]) == (3, 3, 1)


def test_a_store_on_first_use_is_made_only_when_read_or_written(tmp_path, monkeypatch):
    """The nowcast's patient store: no S3 client is made while the champion comes from this
    process's verified models; the first read or write makes it, once."""
    from fairvalue.settings import get_settings
    from storage import artifacts

    made = []
    real = artifacts.get_store

    def counting(settings=None, short_budget=False):
        made.append(short_budget)
        return real(settings, short_budget)

    monkeypatch.setattr(artifacts, "get_store", counting)
    settings = get_settings().model_copy(update={"artifacts_url": str(tmp_path)})
    lazy = artifacts.StoreOnFirstUse(settings)
    assert made == []
    stored = lazy.put("models/x/v1.joblib", b"abc")
    assert lazy.get(stored.uri, stored.sha256) == b"abc"
    assert made == [False]

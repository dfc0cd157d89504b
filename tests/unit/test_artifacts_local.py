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


def test_a_process_makes_one_s3_client_per_endpoint_and_budget_and_a_forked_child_its_own():
    """The stores made per call share their process's client (one took 10-45 ms to make); another
    endpoint or budget gets its own, and a process forked after it was made does not inherit it."""
    import os

    from fairvalue.settings import Settings
    from storage import artifacts

    settings = Settings(artifacts_url="s3://bucket/prefix", s3_endpoint_url="http://127.0.0.1:9")
    first, again = artifacts.get_store(settings), artifacts.get_store(settings)
    assert first.client is again.client
    assert artifacts.get_store(settings, short_budget=True).client is not first.client
    other = settings.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:10"})
    assert artifacts.get_store(other).client is not first.client

    child = os.fork()
    if child == 0:  # the child: no client of the parent's, and a new one made for it
        code = 1
        try:  # whatever happens, the child must not return into pytest
            inherited = bool(artifacts._s3_clients)
            made = artifacts.get_store(settings).client
            kept = made is artifacts.get_store(settings).client
            code = 0 if not inherited and made is not first.client and kept else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert artifacts.get_store(settings).client is first.client  # the parent keeps its own

"""joblib artifacts are only ever unpickled after their sha256 is checked against the registry.

Statically: the only unpickling call in the service is FairValueModel.from_bytes, and the only
caller of from_bytes is storage.registry.load_model, which passes it the bytes returned by the
store's verifying get(uri, sha256). Dynamically: a hostile pickle put where a registered
artifact was is refused before it runs."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import joblib
import pytest

from models.estimator import FairValueModel
from storage.artifacts import IntegrityError, LocalStore, S3Store
from storage.registry import load_model
from storage.tables import ModelVersion

ROOT = Path(__file__).resolve().parents[2]
SERVICE_CODE = ["fairvalue", "api", "models", "storage", "tasks"]
UNPICKLERS = {"load", "loads", "Unpickler", "from_bytes"}  # joblib.load, pickle.loads, ..., from_bytes


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield node, owner, name


def test_only_load_model_unpickles_and_it_verifies_first():
    found = []
    for folder in SERVICE_CODE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node, owner, name in calls(tree):
                if name in UNPICKLERS and owner in {"joblib", "pickle", "cloudpickle", "dill", "FairValueModel",
                                                     "_pickle", "marshal", "shelve"}:
                    found.append((str(path.relative_to(ROOT)), f"{owner}.{name}", node))
    where = sorted((p, n) for p, n, _ in found)
    assert where == [("models/estimator.py", "joblib.load"), ("storage/registry.py", "FairValueModel.from_bytes")]
    (_, _, call), = [f for f in found if f[1] == "FairValueModel.from_bytes"]
    # from_bytes(store.get(version.artifact_uri, version.sha256)): verified bytes, never a path or raw read.
    (arg,) = call.args
    assert isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "get"
    assert [ast.unparse(a) for a in arg.args] == ["version.artifact_uri", "version.sha256"]
    for store in (LocalStore, S3Store):
        assert "verify(" in ast.unparse(ast.parse(_source(store.get)))


def _source(func) -> str:
    import inspect
    import textwrap

    return textwrap.dedent(inspect.getsource(func))


class _Trap:
    """Unpickling this creates a file: proof that hostile bytes were (or were not) executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def hostile_joblib(marker: Path) -> bytes:
    buf = io.BytesIO()
    joblib.dump(_Trap(marker), buf)
    return buf.getvalue()


def test_a_hostile_artifact_is_refused_before_it_runs(tmp_path):
    store = LocalStore(tmp_path / "store")
    real = store.put("models/x/v1.joblib", b"a genuine model would be here")
    marker = tmp_path / "pwned"
    Path(real.uri.removeprefix("file://")).write_bytes(hostile_joblib(marker))  # swapped after registration
    version = ModelVersion(collection_id=1, version=1, estimator="x", artifact_uri=real.uri, sha256=real.sha256)

    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        load_model(store, version)
    assert not marker.exists()

    # The trap is real: unpickled without the check, it runs.
    with pytest.raises(Exception):  # noqa: B017 - whatever it returns is not a model
        FairValueModel.from_bytes(hostile_joblib(marker))
    assert marker.exists()

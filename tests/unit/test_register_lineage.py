"""A gated contender's lineage (fairvalue/lifecycle/training.py `_register_and_decide`): its parent is
the champion the gates compared it with, not whichever model is champion when it is registered. On
an in-memory SQLite database, with a stand-in for the trained model."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pandas as pd
import pytest
from sqlmodel import Session, select

from fairvalue.lifecycle import training
from fairvalue.settings import get_settings
from models import gates
from models.features import MarketData
from storage import requests
from storage.artifacts import LocalStore
from storage.ingest import ensure_collection
from storage.registry import CHAMPION, set_alias
from storage.tables import ModelVersion
from tests.builders import items_and_models, sessions_on


@dataclass
class StandIn:
    """What registration reads of a trained model: its name, parameters and bytes."""

    name: str = "test"
    params: dict = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return b"a contender"


@pytest.fixture
def registry(memory_engine, monkeypatch, tmp_path):
    """(engine, v1 id, v2 id, request id): v1 and v2 registered, a training request claimed by "w"."""
    sessions_on(monkeypatch, training, memory_engine)
    store = LocalStore(tmp_path / "artifacts")
    monkeypatch.setattr(training, "get_store", lambda settings=None: store)
    with Session(memory_engine) as session:
        coll = ensure_collection(session, get_settings().collection)
        v1, v2 = items_and_models(session, coll, ["1"], versions=2)
        request, _ = requests.record(session, coll, "lineage", "test")
        assert requests.claim(session, request.id, "w", timedelta(minutes=5), max_attempts=3)
        session.commit()
        return memory_engine, v1, v2, request.id


def _outcome(gated_against: int | None) -> training.TrainOutcome:
    sales = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01", "2024-01-02"]), "item_key": ["1", "1"],
                          "price": [100.0, 110.0]})
    decision = gates.GateDecision(gates.REJECT, "worse than the champion (the test's)", [], {})
    return training.TrainOutcome(StandIn(), MarketData(sales=sales, market=pd.DataFrame(), items=pd.DataFrame()),
                                 decision, {}, gated_against)


@pytest.mark.parametrize("gated_against", ["v1", None])
def test_the_parent_is_the_champion_the_gates_compared_it_with(registry, gated_against):
    """v1 was champion when training started (or there was none); v2 became champion while it
    trained. The contender's parent used to be v2, a model it was never compared with."""
    engine, v1, v2, request_id = registry
    with Session(engine) as session:
        set_alias(session, ensure_collection(session, get_settings().collection), CHAMPION,
                  session.get(ModelVersion, v2))
        session.commit()
    champion_id = v1 if gated_against == "v1" else None
    result = training._register_and_decide(get_settings(), request_id, "w", _outcome(champion_id))
    with Session(engine) as session:
        version = session.exec(select(ModelVersion).where(ModelVersion.version == result["model_version"])).one()
        assert version.parent_id == champion_id

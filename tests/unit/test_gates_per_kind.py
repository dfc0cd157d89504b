"""The gates' details name what the market has (GateConfig.observations, market_level, set by
each kind's gate_config): a refusal of a cards request said "0 usable sales" and "a higher floor",
which the cards have neither of."""

from __future__ import annotations

import pandas as pd
import pytest

from fairvalue import kinds
from fairvalue.settings import Settings
from models import gates


@pytest.mark.parametrize("kind, observations, level", [
    (kinds.DAILY, "card-day prices", "category index"),
    (kinds.UNIQUE, "sales", "floor"),
])
def test_the_gates_refusal_names_what_the_market_has(kind, observations, level):
    nothing = gates.Evaluation("contender", {"n": 0}, pd.DataFrame(), {
        "n_predictions": 0, "n_nan": 0, "n_nonpositive": 0, "n_band_order": 0, "monotone_in_floor": False})
    decision = gates.decide(nothing, None, None, kind.gate_config(Settings(_env_file=None)))
    assert decision.decision == gates.REJECT
    assert f"eval_n (0 usable {observations} in the evaluation window)" in decision.reason
    assert f"bias (no bias (no usable {observations}))" in decision.reason
    assert f"band_coverage (no band coverage (no band or no {observations}))" in decision.reason
    assert f"sanity_monotone_in_floor (a higher {level} lowers some fair values)" in decision.reason
    other = "sales" if observations != "sales" else "card-day"
    assert other not in decision.reason

import json
from datetime import date, datetime

import pytest

from models.monitor import MonitorConfig, decide_rollback
from models.policy import NewData, PolicyConfig, decide_retrain, idempotency_key, reason_kind

ROWS = {"n_ref": 2000, "n_cur": 300, "min_samples": 30}  # a drift report with the rows for a verdict
QUIET_DRIFT = {"share_drifted": 0.1, "prediction_psi": 0.05, **ROWS}


def test_nothing_wrong_means_no_retrain():
    d = decide_retrain({"n": 100, "mape": 0.12}, QUIET_DRIFT, 2.0, PolicyConfig())
    assert (d.retrain, d.reasons) == (False, [])
    json.dumps(d.as_dict(), allow_nan=False)


def test_no_champion_retrains():
    d = decide_retrain(None, None, None)
    assert (d.retrain, d.reasons) == (True, ["no champion"])


def test_live_error_triggers_with_enough_sales():
    d = decide_retrain({"n": 45, "mape": 0.23}, QUIET_DRIFT, 2.0)
    assert (d.retrain, d.reasons) == (True, ["live_mape 0.23 > 0.20 on 45 sales"])
    assert (d.numbers["live_mape"], d.numbers["live_n"], d.numbers["live_counted"]) == (0.23, 45, True)


@pytest.mark.parametrize(("n", "mape", "retrain"), [
    (29, 0.90, False),  # below live_min_n: not counted however bad
    (30, 0.21, True),
    (30, 0.20, False),  # exactly at the threshold
    (100, None, False),
])
def test_live_error_min_n_and_threshold(n, mape, retrain):
    d = decide_retrain({"n": n, "mape": mape}, QUIET_DRIFT, 2.0, PolicyConfig(max_live_mape=0.20, live_min_n=30))
    assert d.retrain is retrain
    if n < 30:
        assert d.numbers["live_counted"] is False
        assert any("29 sales < 30" in note for note in d.notes)


def test_live_min_n_is_configurable():
    assert decide_retrain({"n": 10, "mape": 0.5}, None, 1.0, PolicyConfig(live_min_n=10)).retrain


def test_feature_drift_triggers():
    d = decide_retrain({"n": 0}, {"share_drifted": 0.40, "prediction_psi": None, **ROWS}, 1.0)
    assert d.reasons == ["feature drift share 0.40 > 0.15"]
    assert not decide_retrain({"n": 0}, {"share_drifted": 0.15, "prediction_psi": None, **ROWS}, 1.0).retrain


def test_prediction_drift_triggers():
    d = decide_retrain({"n": 0}, {"share_drifted": None, "prediction_psi": 0.31, **ROWS}, 1.0)
    assert d.reasons == ["prediction drift psi 0.31 > 0.10"]
    assert not decide_retrain({"n": 0}, {"share_drifted": None, "prediction_psi": 0.10, **ROWS}, 1.0).retrain
    assert not decide_retrain({"n": 0}, {"prediction_psi": 0.2, **ROWS}, 1.0,
                              PolicyConfig(max_prediction_psi=0.3)).retrain


def test_drift_of_too_few_rows_is_not_counted_and_noted():
    """The operator review: 7 sales retrained on "prediction drift psi 6.90 > 0.10" although the
    report itself said prediction_drifted False for n_cur 7. The report's rule decides."""
    few = {"share_drifted": 0.0, "prediction_psi": 6.9, "prediction_drifted": False,
           "n_ref": 2000, "n_cur": 7, "min_samples": 30}
    d = decide_retrain({"n": 7, "mape": 0.1}, few, 1.0)
    assert (d.retrain, d.reasons) == (False, [])
    assert d.numbers["prediction_psi"] == 6.9 and d.numbers["drift_counted"] is False
    assert "drift not counted: 2000 reference and 7 current rows, the report needs 30 in each" in d.notes
    # the report's own min_samples, not a second threshold: with 5 it would have had a verdict
    assert decide_retrain({"n": 0}, {**few, "min_samples": 5}, 1.0).reasons == ["prediction drift psi 6.90 > 0.10"]
    assert not decide_retrain({"n": 0}, {"share_drifted": 0.9, "prediction_psi": 0.9}, 1.0).retrain  # rows unknown


def test_missing_or_failed_drift_does_not_trigger():
    for summary in (None, {}, {"share_drifted": None, "prediction_psi": None}, {"error": "no snapshot"},
                    {"share_drifted": float("nan"), "prediction_psi": float("inf")}):
        assert not decide_retrain({"n": 0}, summary, 1.0).retrain
    d = decide_retrain({"n": 0}, {"error": "no snapshot"}, 1.0)
    assert d.numbers["drift_error"] == "no snapshot"
    assert any("no snapshot" in note for note in d.notes)


def test_champion_age_triggers():
    d = decide_retrain({"n": 0}, QUIET_DRIFT, 9.0)
    assert d.reasons == ["champion is 9.0 days old > 7"]
    assert not decide_retrain({"n": 0}, QUIET_DRIFT, 7.0).retrain
    assert decide_retrain({"n": 0}, QUIET_DRIFT, 3.0, PolicyConfig(max_champion_age_days=2.5)).retrain


def test_age_counts_only_when_something_new_arrived_since_the_training_data():
    """A silent market: the champion ages, but a retrain would learn nothing (and the gates would
    reject it for too few sales, every day)."""
    silent = decide_retrain({"n": 0}, QUIET_DRIFT, 9.0, new_data=NewData(0, "sales", "2030-01-01T00:00:00Z"))
    assert (silent.retrain, silent.reasons) == (False, [])
    assert ("champion is 9.0 days old but no sales since its training data (ended 2030-01-01T00:00:00Z): "
            "nothing new to learn") in silent.notes
    assert silent.numbers["new_since_training"] == 0
    cards = decide_retrain({"n": 0}, QUIET_DRIFT, 9.0, new_data=NewData(0, "prices"))
    assert not cards.retrain and any("no prices since its training data:" in n for n in cards.notes)
    fresh = decide_retrain({"n": 0}, QUIET_DRIFT, 9.0, new_data=NewData(3, "sales", "2030-01-01T00:00:00Z"))
    assert fresh.reasons == ["champion is 9.0 days old > 7"]
    assert fresh.numbers["new_since_training"] == 3
    # Other triggers do not depend on new data; a young champion needs no note.
    assert decide_retrain({"n": 45, "mape": 0.3}, QUIET_DRIFT, 9.0, new_data=NewData(0)).reasons == [
        "live_mape 0.30 > 0.20 on 45 sales"]
    assert not any("days old" in n for n in decide_retrain({"n": 0}, QUIET_DRIFT, 2.0, new_data=NewData(0)).notes)


def test_every_firing_trigger_is_listed():
    d = decide_retrain({"n": 45, "mape": 0.30}, {"share_drifted": 0.5, "prediction_psi": 0.5, **ROWS}, 10.0)
    assert [reason_kind(r) for r in d.reasons] == ["live_error", "feature_drift", "prediction_drift", "age"]


def test_idempotency_key_names_collection_day_and_sorted_kinds():
    reasons = ["live_mape 0.23 > 0.20 on 45 sales", "champion is 9.0 days old > 7"]
    assert idempotency_key("cryptopunks", date(2021, 12, 1), reasons) == "cryptopunks:2021-12-01:age,live_error"


def test_idempotency_key_is_stable_under_reason_order_and_numbers():
    a = idempotency_key("cryptopunks", date(2021, 12, 1), ["live_mape 0.23 > 0.20 on 45 sales",
                                                           "champion is 9.0 days old > 7"])
    b = idempotency_key("cryptopunks", date(2021, 12, 1), ["champion is 9.4 days old > 7",
                                                           "live_mape 0.27 > 0.20 on 61 sales"])
    assert a == b
    assert idempotency_key("cryptopunks", datetime(2021, 12, 1, 23, 59), ["no champion"]) == \
        idempotency_key("cryptopunks", date(2021, 12, 1), ["no champion"])


def test_idempotency_key_differs_by_day_collection_and_kind():
    reasons = ["champion is 9.0 days old > 7"]
    base = idempotency_key("cryptopunks", date(2021, 12, 1), reasons)
    assert idempotency_key("cryptopunks", date(2021, 12, 2), reasons) != base
    assert idempotency_key("other", date(2021, 12, 1), reasons) != base
    assert idempotency_key("cryptopunks", date(2021, 12, 1), ["prediction drift psi 0.31 > 0.25"]) != base
    with pytest.raises(ValueError):
        idempotency_key("cryptopunks", date(2021, 12, 1), [])


# --- monitor --------------------------------------------------------------------------------


def test_rollback_when_the_champion_is_worse_by_more_than_the_margin():
    d = decide_rollback({"n": 25, "mape": 0.23}, {"n": 25, "mape": 0.20}, MonitorConfig())
    assert d.rollback is True
    assert "0.2300" in d.reason and "0.2200" in d.reason
    assert d.numbers["limit"] == pytest.approx(0.22)
    assert (d.numbers["champion_mape"], d.numbers["previous_mape"], d.numbers["n"]) == (0.23, 0.20, 25)
    json.dumps(d.as_dict(), allow_nan=False)


@pytest.mark.parametrize(("champion_mape", "previous_mape", "margin", "rollback"), [
    (0.22, 0.20, 0.10, False),  # at the limit
    (0.2201, 0.20, 0.10, True),
    (0.15, 0.20, 0.10, False),
    (0.75, 0.50, 0.50, False),  # at the limit, exactly representable
    (0.30, 0.20, 0.60, False),  # the margin is configurable
])
def test_rollback_margin_boundary(champion_mape, previous_mape, margin, rollback):
    d = decide_rollback({"n": 20, "mape": champion_mape}, {"n": 20, "mape": previous_mape},
                        MonitorConfig(rollback_margin=margin))
    assert d.rollback is rollback


def test_too_few_sales_never_roll_back():
    d = decide_rollback({"n": 19, "mape": 0.90}, {"n": 19, "mape": 0.10}, MonitorConfig(min_n=20))
    assert d.rollback is False
    assert "too few" in d.reason and "19" in d.reason
    # n is the smaller side: a model with non-finite values on some sales has fewer usable pairs.
    assert not decide_rollback({"n": 40, "mape": 0.9}, {"n": 19, "mape": 0.1}).rollback
    assert decide_rollback({"n": 19, "mape": 0.9}, {"n": 19, "mape": 0.1}, MonitorConfig(min_n=19)).rollback
    assert not decide_rollback({"n": 0}, {"n": 0}).rollback

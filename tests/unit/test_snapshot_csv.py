"""The snapshot's CSV text (database rows and archive) is what pandas' float_format gave."""

import numpy as np
import pandas as pd

from storage.snapshots import ROW_COLUMNS, row_columns, snapshot_csv


def test_numbers_are_written_as_to_csv_float_format_wrote_them():
    rng = np.random.default_rng(5)
    n = 2000
    values = pd.DataFrame({
        "item_key": [f"k{i}" for i in range(n)],
        "fair_value": rng.lognormal(2, 3, n),
        "p10": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(-3, 4, n)),
        "p90": np.where(rng.random(n) < 0.5, np.round(rng.lognormal(2, 2, n)), rng.lognormal(2, 2, n)),  # whole, too
        "signal": rng.choice(["BUY", "HOLD", "SELL"], n),
        "last_price": np.where(rng.random(n) < 0.5, np.nan, rng.lognormal(3, 1, n)),
        "last_sale_at": pd.to_datetime(np.where(rng.random(n) < 0.5, np.datetime64("NaT"),
                                                np.datetime64("2021-03-04T05:06:07"))),
        "extra": 1.0,  # not a row column
        "ask_price": np.where(rng.random(n) < 0.9, np.nan, rng.lognormal(3, 1, n)),  # mostly no ask
        "ask_at": pd.to_datetime(np.where(rng.random(n) < 0.9, np.datetime64("NaT"),
                                          np.datetime64("2021-03-01T00:00:00"))),
        "signal_basis": rng.choice(["ask", "last_sale", None], n),
        "deviation": np.where(rng.random(n) < 0.3, np.nan, np.round(rng.normal(0, 1, n), 6)),
    })
    values.loc[0, ["fair_value", "p10", "p90"]] = [1e-7, 123456789.0, 0.0]
    values.loc[1, "deviation"] = 1.499999  # 1.5 to 6 significant digits: the other side of a threshold of 1.5
    frame = values[list(ROW_COLUMNS)].copy()
    for column in ("last_sale_at", "ask_at"):
        frame[column] = np.where(frame[column].isna(), "", frame[column].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    # The deviation exactly: already rounded to the decimals answers have (models.signals.market_signals).
    frame["deviation"] = [repr(d) if d == d else "" for d in frame["deviation"]]
    expected = frame.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    assert snapshot_csv(values) == expected
    assert ",1.499999\n" in expected


def test_a_kind_without_asks_writes_them_empty():
    values = pd.DataFrame({"item_key": ["a"], "fair_value": [2.5], "p10": [2.0], "p90": [3.0], "signal": ["HOLD"],
                           "last_price": [np.nan], "last_sale_at": [pd.NaT], "signal_basis": [None],
                           "deviation": [np.nan]})
    assert snapshot_csv(values).splitlines() == [",".join(ROW_COLUMNS), "a,2.5,2,3,HOLD,,,,,,"]


def test_values_without_their_signals_basis_and_deviation_are_written_as_before_migration_0019():
    """As a snapshot that recorded none (storage.snapshots.row_columns): its rebuilt archive is the
    one it was archived as, to the byte."""
    values = pd.DataFrame({"item_key": ["a"], "fair_value": [2.5], "p10": [2.0], "p90": [3.0], "signal": ["HOLD"],
                           "last_price": [np.nan], "last_sale_at": [pd.NaT]})
    assert snapshot_csv(values).splitlines() == [",".join(row_columns(False)), "a,2.5,2,3,HOLD,,,,"]
    assert row_columns(False) == ("item_key", "fair_value", "p10", "p90", "signal", "last_price", "last_sale_at",
                                  "ask_price", "ask_at")

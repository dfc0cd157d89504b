"""Did the market agree with the BUYs given to asks?

A sale's signal is judged by what the item did next (models/signal_kpis.py). An ask cannot be:
the sale that fills an ask is the purchase the BUY recommended, not its outcome, and an item
rarely sells twice within a horizon. What the market does say is whether somebody took the ask.
A BUY on an ask claims it is under the item's value; if it is, buyers take it sooner and more
often than the other asks of the same market. So an ask's outcome is whether it was taken while
it stood, and a BUY's precision is read against the base rate of every ask.

Pure: `ask_signal_kpis` over DataFrames; the live track record (fairvalue/track_record.py) feeds
it each priced listing event valued against the last snapshot published before it.

Rules (docs/backtest.md repeats them)
    1. Eligible: a time, an item, a finite positive ask and fair value; others are filtered and
       counted by the first reason that applies (models.backtest.eligible_rows).
    2. Signal: BUY when ask <= fair value x (1 - buy_below) (models.signals.signals), else HOLD:
       an ask over the value says only "do not buy" (models/nowcast.py), never SELL.
    3. The ask stands from its time until the first of: the next listing event of the same item
       and source (a new price or a withdrawal; a sale at that very instant still meets it), its
       expiry (a sale at that instant does not), the item's first sale after it, or the
       horizon's end.
    4. Outcome, from the item's first sale strictly after the ask (any sale, suspected wash
       trades included: any sale changes the item's hands and ends its offers):
       - taken: that sale came while the ask stood, at no less than the ask less TAKEN_TOLERANCE
         (fees and rounding): at the ask, or above it (on another venue: the market paid at least
         the ask);
       - sold_below_ask: it came while the ask stood, lower: the item went for less elsewhere;
       - ended: the ask was replaced, withdrawn or expired before the horizon, unsold;
       - stood: it stood unsold through the horizon;
       - pending: none of these is settled yet at `as_of`, the moment the sales are known to be
         complete to (the horizon is not over).
       Known = every outcome but pending.
    5. Over known asks: taken rate per signal; base rate = taken / known; BUY precision =
       BUY and taken / BUY known (it means something only above the base rate; `lift` is their
       ratio); BUY recall = BUY and taken / taken; median hours from ask to taken per signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.backtest import eligible_rows, next_sale
from models.signal_kpis import _json, _ratio
from models.signals import BUY, HOLD, signals
from models.times import naive_utc, naive_utc_moment

TAKEN_TOLERANCE = 0.005
TAKEN, SOLD_BELOW_ASK, ENDED, STOOD, PENDING = "taken", "sold_below_ask", "ended", "stood", "pending"
OUTCOMES = (TAKEN, SOLD_BELOW_ASK, ENDED, STOOD, PENDING)
ASK_SIGNALS = (BUY, HOLD)


@dataclass
class AskSignalKPIs:
    """How often the asks marked BUY were taken, against every ask of the same market."""

    horizon_days: float
    buy_below: float
    taken_tolerance: float
    n_rows: int
    n_events: int  # eligible asks
    n_filtered: int
    filtered: dict[str, int]
    n_known: int
    n_pending: int
    distribution: dict[str, int]  # signal -> eligible asks
    outcomes_by_signal: dict[str, dict[str, int]]  # signal -> outcome -> asks
    taken_rate_by_signal: dict[str, float]  # over known asks of the signal
    base_rate_taken: float  # taken / known, every signal
    buy_precision: float
    buy_recall: float
    lift: float  # buy_precision / base_rate_taken
    median_hours_to_taken: dict[str, float]
    outcomes: pd.DataFrame = field(repr=False)  # one row per eligible ask, see ask_signal_kpis()

    def as_dict(self) -> dict[str, Any]:
        return {k: _json(v) for k, v in self.__dict__.items() if k != "outcomes"}


def _next_event_times(asks: pd.DataFrame, listings: pd.DataFrame) -> np.ndarray:
    """For each ask, the time of the first listing event of its item and source after it."""
    out = np.full(len(asks), np.datetime64("NaT"), dtype="datetime64[ns]")
    if listings is None or listings.empty or asks.empty:
        return out
    right = pd.DataFrame({"ts": naive_utc(listings["ts"]).to_numpy(),
                          "key": listings["item_key"].astype(str) + "\x1f" + listings["source"].astype(str)})
    right = right.dropna(subset=["ts"]).sort_values("ts", kind="stable")
    right["next_ts"] = right["ts"]
    left = pd.DataFrame({"ts": asks["timestamp"].to_numpy(),
                         "key": asks["item_id"] + "\x1f" + asks["source"], "_order": np.arange(len(asks))})
    joined = pd.merge_asof(left.sort_values("ts", kind="stable"), right, on="ts", by="key",
                           direction="forward", allow_exact_matches=False)
    out[joined["_order"].to_numpy()] = joined["next_ts"].to_numpy(dtype="datetime64[ns]")
    return out


def ask_signal_kpis(
    asks: pd.DataFrame,
    listings: pd.DataFrame,
    sales: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon_days: float = 30,
    buy_below: float = 0.10,
) -> AskSignalKPIs:
    """Judge the BUYs given to asks by whether the asks were taken (module docstring).

    asks: the asks to judge: event_id, item_id, source, timestamp, price (the ask), fair_value
        (the value published before it), expires_at (NaT: none).
    listings: every listing event of those items that may end one (item_key, source, ts), from
        the first ask on; the asks themselves may be among them.
    sales: every sale of those items after the first ask (ts, item_key, price).
    as_of: what is known by now (naive UTC): an ask whose fate is not settled by then is pending.

    The `outcomes` frame has one row per eligible ask: event_id, item_id, source, timestamp,
    price, fair_value, signal, ends_at (the first of next event, expiry and horizon end),
    sale_ts, sale_price, outcome, hours_to_taken (NaN unless taken).
    """
    frame = asks.reset_index(drop=True)
    ok, filtered = eligible_rows(frame)
    rows = frame[ok].reset_index(drop=True)
    rows = rows.assign(timestamp=naive_utc(rows["timestamp"]), item_id=rows["item_id"].astype(str),
                       source=rows["source"].astype(str))
    price = pd.to_numeric(rows["price"]).to_numpy(dtype=float)
    fair = pd.to_numeric(rows["fair_value"]).to_numpy(dtype=float)
    signal = np.where(signals(price, fair, buy_below, math.inf) == BUY, BUY, HOLD)
    ts = rows["timestamp"].to_numpy(dtype="datetime64[ns]")

    horizon_end = ts + np.timedelta64(int(horizon_days * 86400), "s")
    next_event = _next_event_times(rows, listings)
    expires = naive_utc(rows["expires_at"]).to_numpy(dtype="datetime64[ns]") if "expires_at" in rows \
        else np.full(len(rows), np.datetime64("NaT"), dtype="datetime64[ns]")
    ends_at = horizon_end.copy()
    for cut in (next_event, expires):
        earlier = ~np.isnat(cut) & (cut < ends_at)
        ends_at[earlier] = cut[earlier]
    ended_early = ends_at < horizon_end
    sale_ts, sale_price = next_sale(ts, rows["item_id"], sales, horizon_days)  # past the horizon it is moot
    now = np.datetime64(naive_utc_moment(as_of))

    # A sale at the very instant of the source's next event still meets this ask (open_asks reads
    # it as the latest then); at its expiry it does not (open_asks: expired once expires <= t).
    before_expiry = np.isnat(expires) | (sale_ts < expires)
    sold_in_time = ~np.isnat(sale_ts) & (sale_ts <= ends_at) & before_expiry
    with np.errstate(invalid="ignore"):
        at_ask = sale_price >= price * (1 - TAKEN_TOLERANCE) - 1e-12
    outcome = np.full(len(rows), PENDING, dtype=object)
    outcome[sold_in_time & at_ask] = TAKEN
    outcome[sold_in_time & ~at_ask] = SOLD_BELOW_ASK
    # Unsold: settled once its end has passed by `as_of`. A sale reported later with an earlier
    # time would still turn it into taken: callers give an `as_of` the sales are complete to.
    unsold_settled = ~sold_in_time & (ends_at <= now)
    outcome[unsold_settled & ended_early] = ENDED
    outcome[unsold_settled & ~ended_early] = STOOD
    known = outcome != PENDING
    taken = outcome == TAKEN
    hours = np.where(taken, (sale_ts - ts) / np.timedelta64(1, "h"), np.nan)

    is_buy = signal == BUY
    n_known = int(known.sum())
    buy_precision = _ratio(int((is_buy & taken).sum()), int((is_buy & known).sum()))
    base_rate = _ratio(int(taken.sum()), n_known)
    outcomes = pd.DataFrame({
        "event_id": rows["event_id"].to_numpy() if "event_id" in rows else np.arange(len(rows)),
        "item_id": rows["item_id"].to_numpy(), "source": rows["source"].to_numpy(), "timestamp": ts,
        "price": price, "fair_value": fair, "signal": signal, "ends_at": ends_at,
        "sale_ts": sale_ts, "sale_price": sale_price, "outcome": outcome, "hours_to_taken": hours,
    })
    n_events = int(ok.sum())
    return AskSignalKPIs(
        horizon_days=horizon_days,
        buy_below=buy_below,
        taken_tolerance=TAKEN_TOLERANCE,
        n_rows=len(frame),
        n_events=n_events,
        n_filtered=len(frame) - n_events,
        filtered=filtered,
        n_known=n_known,
        n_pending=n_events - n_known,
        distribution={s: int((signal == s).sum()) for s in ASK_SIGNALS},
        outcomes_by_signal={s: {o: int(((signal == s) & (outcome == o)).sum()) for o in OUTCOMES}
                            for s in ASK_SIGNALS},
        taken_rate_by_signal={s: _ratio(int(((signal == s) & taken).sum()), int(((signal == s) & known).sum()))
                              for s in ASK_SIGNALS},
        base_rate_taken=base_rate,
        buy_precision=buy_precision,
        buy_recall=_ratio(int((is_buy & taken).sum()), int(taken.sum())),
        lift=buy_precision / base_rate if base_rate and math.isfinite(buy_precision) else math.nan,
        median_hours_to_taken={s: float(np.median(hours[(signal == s) & taken])) if ((signal == s) & taken).any()
                               else math.nan for s in ASK_SIGNALS},
        outcomes=outcomes,
    )

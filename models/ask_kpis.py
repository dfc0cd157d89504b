"""Did the market agree with the BUYs given to asks?

A sale's signal is judged by what the item did next (models/signal_kpis.py). An ask cannot be:
the sale that fills an ask is the purchase the BUY recommended, not its outcome, and an item
rarely sells twice within a horizon. What the market does say is whether somebody took the ask.
A BUY on an ask claims it is under the item's value; if it is, buyers take it sooner and more
often than the other asks of the same market. So an ask's outcome is whether it was taken while
it stood, and a BUY's precision is read against the base rate of every ask.

Pure: `ask_signal_kpis` over DataFrames; the live track record (fairvalue/signal_record.py) feeds
it each priced listing event valued against the last snapshot published before it.

Rules (docs/backtest.md repeats them)
    1. Eligible: a time, an item, a finite positive ask and fair value; others are filtered and
       counted by the first reason that applies (models.backtest.eligible_rows). Of one item's
       and source's events at one instant only the last given stands (open_asks reads it as the
       offer from then on): an earlier one never stood and is filtered (replaced_at_its_instant).
    2. Signal: BUY when ask <= fair value x (1 - buy_below) (models.signals.signals), else HOLD:
       an ask over the value says only "do not buy" (models/nowcast.py), never SELL.
    3. The ask stands from its time until the first of: the next listing event of the same item
       and source (a new price or a withdrawal; a sale at that very instant still meets it, and
       a new price too: which it filled is unknown), its expiry (a sale at that instant does
       not), the item's first sale at or after it, or the horizon's end.
    4. Outcome, from the item's first sale at or after the ask's instant, each sale at the latest
       it may have come (its hour's end for one known only to the hour): the sale that ends the
       ask in open_asks. One stamped with the ask's instant is most likely its purchase. Any
       sale counts, suspected wash trades included: any sale changes the item's hands and ends
       its offers.
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
from models.listings import next_event_times, sale_latest
from models.signal_kpis import _json, _ratio
from models.signals import BUY, HOLD, signals
from models.times import naive_utc, naive_utc_moment

TAKEN_TOLERANCE = 0.005
TAKEN, SOLD_BELOW_ASK, ENDED, STOOD, PENDING = "taken", "sold_below_ask", "ended", "stood", "pending"
OUTCOMES = (TAKEN, SOLD_BELOW_ASK, ENDED, STOOD, PENDING)
ASK_SIGNALS = (BUY, HOLD)
# An ask a later given event of its item and source replaced at its very instant: it never stood.
REPLACED_AT_ITS_INSTANT = "replaced_at_its_instant"


@dataclass
class AskSignalKPIs:
    """How often the asks marked BUY were taken, against every ask of the same market."""

    horizon_days: float
    buy_below: float
    taken_tolerance: float
    n_rows: int
    n_events: int  # judged asks: eligible, and stood (rule 1)
    n_filtered: int
    filtered: dict[str, int]
    n_known: int
    n_pending: int
    distribution: dict[str, int]  # signal -> judged asks
    outcomes_by_signal: dict[str, dict[str, int]]  # signal -> outcome -> asks
    taken_rate_by_signal: dict[str, float]  # over known asks of the signal
    base_rate_taken: float  # taken / known, every signal
    buy_precision: float
    buy_recall: float
    lift: float  # buy_precision / base_rate_taken
    median_hours_to_taken: dict[str, float]
    outcomes: pd.DataFrame = field(repr=False)  # one row per judged ask, see ask_signal_kpis()

    def as_dict(self) -> dict[str, Any]:
        return {k: _json(v) for k, v in self.__dict__.items() if k != "outcomes"}


def _next_event_times(asks: pd.DataFrame, listings: pd.DataFrame | None) -> np.ndarray:
    """For each ask, when the next listing event of its item and source comes in the book's order
    (models.listings.next_event_times): at its own instant when a later given one replaced it at
    once. An ask is found among the listings by its event id; one not among them is taken as given
    after them."""
    columns = ["event_id", "item_key", "source", "ts"]
    given = pd.DataFrame(columns=columns) if listings is None else listings[columns]
    own = asks.rename(columns={"item_id": "item_key", "timestamp": "ts"})[columns]
    events = pd.concat([given.assign(ts=naive_utc(given["ts"])), own[~own["event_id"].isin(given["event_id"])]],
                       ignore_index=True).drop_duplicates("event_id", keep="last")  # one event reported twice
    following = pd.Series(next_event_times(events), index=events["event_id"].to_numpy())
    return following.reindex(asks["event_id"].to_numpy()).to_numpy(dtype="datetime64[ns]")


def _standing(rows: pd.DataFrame, listings: pd.DataFrame | None) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The asks that stood, with when the next event of their item and source comes, and how many
    did not: of one instant only the last given stands, as open_asks reads the book."""
    next_event = _next_event_times(rows, listings)
    replaced = next_event == rows["timestamp"].to_numpy(dtype="datetime64[ns]")
    return rows[~replaced].reset_index(drop=True), next_event[~replaced], int(replaced.sum())


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
    listings: every listing event of those items that may end one (event_id, item_key, source,
        ts), from the first ask on, in the order given (of one instant, the last given stands, as
        in models.listings.book_order); an ask among them is found by its event id, one that is
        not is taken as given after them.
    sales: every sale of those items that may have come at or after the first ask (ts, item_key,
        price, optional hour_precision).
    as_of: what is known by now (naive UTC): an ask whose fate is not settled by then is pending.

    The `outcomes` frame has one row per judged ask: event_id, item_id, source, timestamp,
    price, fair_value, signal, ends_at (the first of next event, expiry and horizon end),
    sale_ts (the latest the sale may have come), sale_price, outcome, hours_to_taken (NaN unless
    taken).
    """
    frame = asks.reset_index(drop=True)
    ok, filtered = eligible_rows(frame)
    rows = frame[ok].reset_index(drop=True)
    rows = rows.assign(timestamp=naive_utc(rows["timestamp"]), item_id=rows["item_id"].astype(str),
                       source=rows["source"].astype(str))
    rows, next_event, n_replaced = _standing(rows, listings)
    if n_replaced:
        filtered[REPLACED_AT_ITS_INSTANT] = n_replaced
    price = pd.to_numeric(rows["price"]).to_numpy(dtype=float)
    fair = pd.to_numeric(rows["fair_value"]).to_numpy(dtype=float)
    signal = np.where(signals(price, fair, buy_below, math.inf) == BUY, BUY, HOLD)
    ts = rows["timestamp"].to_numpy(dtype="datetime64[ns]")

    horizon_end = ts + np.timedelta64(int(horizon_days * 86400), "s")
    expires = naive_utc(rows["expires_at"]).to_numpy(dtype="datetime64[ns]") if "expires_at" in rows \
        else np.full(len(rows), np.datetime64("NaT"), dtype="datetime64[ns]")
    ends_at = horizon_end.copy()
    for cut in (next_event, expires):
        earlier = ~np.isnat(cut) & (cut < ends_at)
        ends_at[earlier] = cut[earlier]
    ended_early = ends_at < horizon_end
    # The sale that ends the ask in open_asks judges it: the first that may have come at or after
    # its instant (one known only to the hour at its hour's end). One stamped with the ask's
    # instant is most likely its fill: a listing and its purchase in one block.
    sale_ts, sale_price = next_sale(ts, rows["item_id"], sales.assign(ts=sale_latest(sales)), horizon_days,
                                    at_or_after=True)  # past the horizon it is moot
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
        "event_id": rows["event_id"].to_numpy(),
        "item_id": rows["item_id"].to_numpy(), "source": rows["source"].to_numpy(), "timestamp": ts,
        "price": price, "fair_value": fair, "signal": signal, "ends_at": ends_at,
        "sale_ts": sale_ts, "sale_price": sale_price, "outcome": outcome, "hours_to_taken": hours,
    })
    n_events = len(rows)
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

"""Suspected wash trades: sales between parties that look like one owner trading with itself.

A wash trade's price says nothing about what the market pays, so such a sale is stored with
its reason but neither trains the model nor feeds the market context, and replay does not
score it (it reports how many it left out, and why).

Each flag is causal: it reads only the sale itself and the sales before it (in (ts, event_id)
order) within WINDOW. So a sale's flag never changes when later sales arrive, only when an
earlier one arrives late, and then it can only get stronger; a nowcast at t sees the flags
production saw at t.

Rules, strongest first (a sale gets the first that applies):
- self_trade: seller and buyer are the same address;
- round_trip: the item comes back to the address that sold it: an earlier sale of the same
  item went from this sale's buyer to this sale's seller;
- repeated_pair: the two addresses (either direction, any item) already traded twice.
An empty or zero address (an accepted bid whose buyer the source did not record) proves
nothing: a sale without both parties is never flagged and never counts for another.

On the bundled sales this flags 102 sales in 2021 H1, 55 in Q3 and 8 in Q4 (docs/model.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOW = pd.Timedelta(days=30)
REPEATED_PAIR_PRIOR_TRADES = 2  # a pair's third trade within the window is flagged
ZERO_ADDRESS = "0x" + "0" * 40


class WashReason:
    SELF_TRADE = "wash_self_trade"
    ROUND_TRIP = "wash_round_trip"
    REPEATED_PAIR = "wash_repeated_pair"


STRENGTH = {None: 0, WashReason.REPEATED_PAIR: 1, WashReason.ROUND_TRIP: 2, WashReason.SELF_TRADE: 3}


def strongest(a: str | None, b: str | None) -> str | None:
    """The stronger of two reasons: what a sale's flag becomes when new evidence arrives."""
    return a if STRENGTH[a] >= STRENGTH[b] else b


def wash_reasons(sales: pd.DataFrame, window: pd.Timedelta = WINDOW) -> pd.Series:
    """The wash reason of each sale (None when clean), aligned to `sales`' index.

    sales: columns event_id, ts (datetime64), item_key, seller, buyer (addresses lower-case,
    "" when unknown). Vectorised: a large ingest batch is flagged in milliseconds.
    """
    reasons = pd.Series(None, index=sales.index, dtype=object)
    if sales.empty:
        return reasons
    order = sales.sort_values(["ts", "event_id"], kind="stable")
    seller = order["seller"].fillna("").astype(str).to_numpy()
    buyer = order["buyer"].fillna("").astype(str).to_numpy()
    ts = order["ts"].to_numpy(dtype="datetime64[ns]").astype("int64")
    position = np.arange(len(order))  # a sale's rank in time order: lower is earlier
    parties = _is_party(seller) & _is_party(buyer)

    self_trade = parties & (seller == buyer)
    round_trip = parties & _has_earlier_reverse_sale(order["item_key"].to_numpy(), seller, buyer, ts, position,
                                                     parties, window.value)
    repeated = parties & (_earlier_pair_trades(seller, buyer, ts, parties, window.value)
                          >= REPEATED_PAIR_PRIOR_TRADES)

    flag = np.full(len(order), None, dtype=object)
    flag[repeated] = WashReason.REPEATED_PAIR
    flag[round_trip] = WashReason.ROUND_TRIP  # stronger reasons written last win
    flag[self_trade] = WashReason.SELF_TRADE
    reasons.loc[order.index] = flag
    return reasons


def _is_party(addresses: np.ndarray) -> np.ndarray:
    return (addresses != "") & (addresses != ZERO_ADDRESS)


def _has_earlier_reverse_sale(item, seller, buyer, ts, position, parties, window_ns: int) -> np.ndarray:
    """Whether an earlier sale of the same item, within the window, went buyer -> seller."""
    frame = pd.DataFrame({"item": item, "seller": seller, "buyer": buyer, "ts": ts, "position": position})[parties]
    earlier = frame.rename(columns={"seller": "buyer", "buyer": "seller"})  # matched with the roles swapped
    pairs = frame.merge(earlier, on=["item", "seller", "buyer"], suffixes=("", "_earlier"))
    hit = pairs[(pairs["position_earlier"] < pairs["position"]) & (pairs["ts_earlier"] >= pairs["ts"] - window_ns)]
    found = np.zeros(len(item), dtype=bool)
    found[hit["position"].to_numpy()] = True
    return found


def _earlier_pair_trades(seller, buyer, ts, parties, window_ns: int) -> np.ndarray:
    """How many earlier sales (any item, either direction) the same two parties made within
    the window. Sales are in time order, so within a pair's group the earlier ones come first."""
    counts = np.zeros(len(ts), dtype=np.int64)
    at = np.flatnonzero(parties)
    if not len(at):
        return counts
    low, high = np.minimum(seller[at], buyer[at]), np.maximum(seller[at], buyer[at])
    pair = pd.factorize(pd.Series(low) + "|" + pd.Series(high))[0]
    by_pair = np.lexsort((at, pair))  # grouped by pair, time order inside each group
    group, group_ts = pair[by_pair], ts[at][by_pair]
    # A row's earlier trades in the window: its rank in the group minus the rank of the first
    # trade of its group at or after ts - window, found by one search over (group, ts).
    key = np.rec.fromarrays([group, group_ts])
    first_in_window = np.searchsorted(key, np.rec.fromarrays([group, group_ts - window_ns]), side="left")
    counts[at[by_pair]] = np.arange(len(by_pair)) - first_in_window
    return counts

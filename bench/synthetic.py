"""Synthetic collections shaped like the bundled market, for benchmarks at any size.

A collection of n items is generated at run time (seeded, nothing is written to the repo):

- **items**: each synthetic item copies the type, accessory set, gender and skin tone of a
  bundled punk drawn uniformly at random (a bootstrap of whole rows), so the joint distribution
  of type, accessory count, traits and attributes is the bundled one and the champion's trait
  vocabulary applies.
- **sales**: as many per item as the bundled market has (17,334 sales / 10,000 punks). Each
  synthetic sale resamples one bundled sale as a whole (its time and its log premium over the
  floor known before it), moves its time by up to one hour so that times do not repeat in
  blocks, gives it to a random synthetic item, and prices it at that floor x exp(premium).
  The time profile (the 2021 boom), the premium distribution and the link between the two
  are therefore the bundled ones.
- **market days**: the bundled floor and ETH/USD series, unchanged.

`generate(n, seed)` returns frames in both forms the benchmarks need: a `MarketData` for
the models, and rows for `storage.bulk` to COPY into PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "cryptopunks"


@dataclass
class Bundled:
    punks: pd.DataFrame  # type, accessory_count, accessories (list) and the ITEM_ATTRIBUTES
    sales: pd.DataFrame  # ts (naive UTC), log_premium over the floor known before the sale
    market: pd.DataFrame  # day, floor, eth_usd


def load_bundled(data_dir: Path = DATA_DIR) -> Bundled:
    from models.features import ITEM_ATTRIBUTES, floor_before
    from models.market_index import robust_floor

    punks = pd.read_csv(data_dir / "punks.csv", keep_default_na=False)
    punks["accessories"] = punks["accessories"].map(lambda s: [a.strip() for a in s.split("/") if a.strip()])
    floor = pd.read_csv(data_dir / "floor.csv", parse_dates=["date"])
    eth = pd.read_csv(data_dir / "eth_usd.csv", parse_dates=["date"])
    market = (floor.merge(eth, on="date", how="outer").rename(columns={"date": "day", "floor_eth": "floor"})
              .sort_values("day").reset_index(drop=True))
    market["day"] = market["day"].astype("datetime64[ns]")
    sales = pd.read_csv(data_dir / "sales.csv", usecols=["timestamp", "price_eth"])
    ts = pd.to_datetime(sales["timestamp"], utc=True).dt.tz_localize(None).astype("datetime64[ns]")
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero or missing price is dropped below
        premium = np.log(sales["price_eth"].to_numpy(dtype=float) / floor_before(robust_floor(market), ts))
    ok = np.isfinite(premium)
    return Bundled(
        punks=punks[["type", "accessory_count", "accessories", *ITEM_ATTRIBUTES]],
        sales=pd.DataFrame({"ts": ts[ok].to_numpy(), "log_premium": premium[ok]}),
        market=market[["day", "floor", "eth_usd"]],
    )


@dataclass
class SyntheticCollection:
    items: pd.DataFrame  # index item_key ("0".."n-1"); item_type, accessory_count, accessories, attributes
    sales: pd.DataFrame  # event_id, ts, item_key, price; sorted by ts
    market: pd.DataFrame  # day, floor, eth_usd

    def market_data(self):
        from models.features import MarketData

        return MarketData(items=self.items, sales=self.sales, market=self.market)


def generate(n_items: int, seed: int = 7, bundled: Bundled | None = None) -> SyntheticCollection:
    """A collection of `n_items` items and its sales; the same seed gives the same collection."""
    from models.features import ITEM_ATTRIBUTES, floor_before
    from models.market_index import robust_floor

    bundled = bundled or load_bundled()
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(bundled.punks), n_items)
    items = pd.DataFrame(
        {
            "item_type": bundled.punks["type"].to_numpy()[rows],
            "accessory_count": bundled.punks["accessory_count"].to_numpy()[rows],
            "accessories": bundled.punks["accessories"].to_numpy()[rows],
        }
        | {name: bundled.punks[name].to_numpy()[rows] for name in ITEM_ATTRIBUTES},
        index=pd.Index(np.arange(n_items).astype(str), name="item_key"),
    )
    sales_per_item = len(bundled.sales) / len(bundled.punks)
    n_sales = int(round(n_items * sales_per_item))
    picks = rng.integers(0, len(bundled.sales), n_sales)
    jitter = rng.integers(0, 3_600_000_000_000, n_sales).astype("timedelta64[ns]")
    ts = bundled.sales["ts"].to_numpy()[picks] + jitter
    order = np.argsort(ts, kind="stable")
    ts, premium = ts[order], bundled.sales["log_premium"].to_numpy()[picks][order]
    floor = floor_before(robust_floor(bundled.market), pd.Series(ts))
    price = np.round(floor * np.exp(premium), 6)
    ok = np.isfinite(price) & (price > 0)
    sales = pd.DataFrame(
        {
            "event_id": np.char.add("syn-", np.arange(n_sales).astype(str))[ok],
            "ts": ts[ok],
            "item_key": rng.integers(0, n_items, n_sales).astype(str)[ok],
            "price": price[ok],
        }
    )
    return SyntheticCollection(items=items, sales=sales, market=bundled.market.copy())

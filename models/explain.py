"""Why an item is valued where it is: top drivers and the comparable sales behind its fair value.

Drivers are measured by occlusion against a *typical item at the same moment*: the item's
features, one group at a time (its traits, its type, its rarity, its own last sale, its
comparable sales...), are replaced by the median features of a sample of items valued at the
same time, and the change of the predicted log premium is that group's effect. The question
answered is "what makes this punk worth more or less than a typical punk today" — market-state
groups are the same for every item at one moment, so they are not drivers of that difference;
the market's part is the typical item's value itself (`typical_value`).

Effects of groups do not add up exactly (the trees interact); `interactions` is the rest, so
typical_value * exp(sum of effects + interactions) is the fair value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.estimator import FairValueModel
from models.features import (
    COMPS_TRAIT,
    COMPS_TYPE,
    ITEM_ATTRIBUTES,
    MarketData,
    build_features,
    comparable_sale_rows,
)
from models.metrics import finite_or_none

BASELINE_SAMPLE = 400  # items valued alongside to form the typical item; enough for stable medians


@dataclass
class Driver:
    group: str  # e.g. "trait:Hoodie", "type", "own last sale"
    effect: float  # change of log fair value this group makes vs the typical item
    effect_pct: float  # the same as a percentage of value: 100 * (exp(effect) - 1), e.g. 687.4 for +687.4 %


def feature_groups(columns: list[str], present_traits: list[str]) -> dict[str, list[str]]:
    """Model columns grouped into what a person would name; the item's own traits one by one."""
    groups: dict[str, list[str]] = {f"trait:{t}": [f"trait:{t}"] for t in present_traits
                                    if f"trait:{t}" in columns}
    absent = [c for c in columns if c.startswith("trait:") and c[len("trait:"):] not in present_traits]
    named = {
        "traits it lacks": absent,
        "type": [c for c in columns if c.startswith("type:") or c == "type_log_frequency"],
        "rarity": [c for c in ("accessory_count", "rarest_trait_log_frequency", "trait_log_frequency_sum")
                   if c in columns],
        "own last sale": [c for c in columns if c.startswith("last_sale_")],
        "comparable sales (rarest trait)": [c for c in columns if c.startswith("comps_trait_")],
        "comparable sales (same type)": [c for c in columns if c.startswith("comps_type_")],
        "comparable sales (its other traits)": [c for c in columns
                                                if c.startswith(("comps_trait2_", "comps_traits_"))],
        "its traits, priced together": [c for c in columns if c.startswith("hedonic_")],
    }
    named.update({name.replace("_", " "): [c for c in columns if c.startswith(f"{name}:")] for name in ITEM_ATTRIBUTES})
    groups.update({name: cols for name, cols in named.items() if cols})
    return groups


def _log_premium(model: FairValueModel, rows: pd.DataFrame) -> np.ndarray:
    values = model.predict_features(rows)
    return np.log(values["fair_value"].to_numpy() / rows["floor"].to_numpy(dtype=float))


def explain(model: FairValueModel, data: MarketData, item_key: str, as_of: pd.Timestamp,
            top: int = 5, n_comps: int = 10, seed: int = 0) -> dict[str, Any]:
    """Drivers and comparable sales of one item's fair value at `as_of`, from data strictly before it."""
    if item_key not in data.items.index:
        raise KeyError(item_key)
    as_of = pd.Timestamp(as_of)
    data = data.known_at(as_of)  # as the nowcast valued it (models.nowcast.value_all_items)
    rng = np.random.default_rng(seed)
    others = data.items.index[data.items.index != item_key]
    sample = rng.choice(others, size=min(BASELINE_SAMPLE, len(others)), replace=False)
    # At nanoseconds, as the nowcast asks (models.nowcast.value_all_items): a live moment is in
    # microseconds, and features.naive_times converts such a column where it copies one in nanoseconds.
    queries = pd.DataFrame({"item_key": [item_key, *sample], "ts": as_of.as_unit("ns")})
    feats = build_features(data, model.vocab, queries).reset_index(drop=True)
    item, typical = feats.iloc[[0]], feats.iloc[1:]

    baseline = typical[model.columns].median(skipna=True)
    typical_row = item.copy()
    typical_row[model.columns] = baseline.to_numpy()
    groups = feature_groups(model.columns, list(data.items.at[item_key, "accessories"]))
    occluded = pd.concat([item] * len(groups), ignore_index=True)
    for i, cols in enumerate(groups.values()):
        occluded.loc[i, cols] = baseline[cols].to_numpy()
    scores = _log_premium(model, pd.concat([item, typical_row, occluded], ignore_index=True))
    own, typical_score, without = scores[0], scores[1], scores[2:]
    effects = own - without
    drivers = [Driver(name, float(e), 100 * float(np.expm1(e))) for name, e in zip(groups, effects, strict=True)]
    drivers.sort(key=lambda d: abs(d.effect), reverse=True)

    floor = float(item["floor"].iloc[0])
    return {
        "item_id": item_key,
        "as_of": as_of.isoformat(),
        "fair_value": floor * float(np.exp(own)),
        "floor": floor,
        "typical_value": floor * float(np.exp(typical_score)),
        "drivers": [asdict(d) for d in drivers[:top]],
        "interactions": float((own - typical_score) - effects.sum()),
        "comparable_sales": comparable_sales(data, model, item_key, as_of, n_comps),
    }


def comparable_sales(data: MarketData, model: FairValueModel, item_key: str, as_of: pd.Timestamp,
                     limit: int = 10) -> list[dict[str, Any]]:
    """The sales the comparable-sales features of this item were computed from, newest first and at
    most `limit` per basis: items sharing its rarest trait, then items of its type."""
    rarest = model.vocab.rarest_trait(data.items.loc[[item_key]]).iloc[0]
    item_type = data.items.at[item_key, "item_type"]
    out = []
    for label, key_of_item, group, window in (
        (f"rarest trait: {rarest}", model.vocab.rarest_trait(data.items), rarest, COMPS_TRAIT),
        (f"type: {item_type}", data.items["item_type"], item_type, COMPS_TYPE),
    ):
        if not group:
            continue
        rows = comparable_sale_rows(data, key_of_item, group, as_of, window)
        for row in rows.iloc[::-1].head(limit).itertuples():
            out.append({"basis": label, "event_id": row.event_id, "item_id": row.item_key,
                        "timestamp": pd.Timestamp(row.ts).isoformat(), "price": float(row.price),
                        # None when no market premium was known in the week before that sale
                        "premium_over_market": finite_or_none(np.expm1(row.excess_premium))})
    return out

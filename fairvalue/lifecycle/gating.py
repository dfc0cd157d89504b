"""Training a contender and gating it: the contender's recipe and the champion scored on the same
forward window, the gates applied (models/gates.py), then the contender fitted on everything.
No database writes: training.py registers the outcome."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fairvalue import kinds, pipeline
from fairvalue.answers import iso
from fairvalue.settings import Settings
from models import estimator, gates
from models.diagnostics import item_segments, segment_metrics
from models.features import MarketData, build_features, floor_before
from models.metrics import valuation_metrics
from storage.artifacts import get_store
from storage.db import session_scope
from storage.market import load_market_data
from storage.registry import CHAMPION, get_alias, load_model
from storage.tables import ModelVersion

# The segmentations of item_segments the segments gate compares: the type and the price band of
# the fair value. The attributes (gender, skin tone) are reported by /performance, not gated on.
GATE_SEGMENTATIONS = ("type", "price_band")

# No attempt can train a collection without sales (or prices), or with too few, until more are
# ingested: its request fails at once instead of retrying.
NothingToTrain = pipeline.NothingToTrain
TRAINING_REFUSALS = pipeline.TRAINING_REFUSALS


def _no_checkpoint() -> None:
    """train_and_gate outside a claimed request (tests, benches): no time limit to check."""


@dataclass
class TrainOutcome:
    model: estimator.FairValueModel
    data: MarketData
    decision: gates.GateDecision
    numbers: dict[str, Any]
    champion_id: int | None
    # The version's diagnostics page and its learning curve, on the gates' window (unique items;
    # the daily kind has none, as `fairvalue train` makes none for it).
    diagnostics: Any = None
    learning_curve: dict[str, Any] | None = None


def train_params(settings: Settings, overrides: dict) -> estimator.TrainParams:
    base = settings.train_params()
    allowed = set(estimator.TrainParams.__dataclass_fields__)
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"unknown training params {sorted(unknown)}; known: {sorted(allowed)}")
    return estimator.TrainParams(**{**base, **overrides})


def train_and_gate(settings: Settings, overrides: dict,
                   checkpoint: Callable[[], None] = _no_checkpoint) -> TrainOutcome:
    """Score the contender's recipe and the champion on the same forward window (the last
    `gate_window_days` of sales, widened back to hold the gates' min_eval_n sales when those days
    hold fewer: gates.window_start; unseen by both), apply the gates, then fit the contender on
    everything. When the champion was trained before the window it is scored as it is;
    otherwise its recipe is refitted on the data before the window, like the contender's.
    `checkpoint` is called between the stages (it raises TrainingTimedOut past the time limit)."""
    store = get_store(settings)
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        if kinds.is_daily(coll):
            return _train_and_gate_daily(settings, overrides, checkpoint)
    params = train_params(settings, overrides)
    with session_scope() as session:
        data = load_market_data(session, coll)
        champion = get_alias(session, coll, CHAMPION)
    if data.sales.empty:
        raise NothingToTrain(f"collection {coll.slug!r} holds no clean sale to train on: ingest sales first "
                             "(fairvalue ingest sales FILE, or the sales webhook)")
    store.check()  # a missing bucket fails the attempt now, not after the fits
    data.context()  # computed once; the market before the window reuses a slice of it
    checkpoint()
    config = kinds.UNIQUE.gate_config(settings)
    end = data.sales["ts"].max()
    start, widened = gate_window_start(data, settings)
    past = data.before(start)
    window = data.sales[data.sales["ts"] >= start].reset_index(drop=True)
    queries = pd.DataFrame({"item_key": window["item_key"], "ts": window["ts"].dt.normalize().clip(lower=start)})

    contender_eval = estimator.fit(past, params)
    checkpoint()
    evaluations, champion_mode, band_basis = {}, None, None
    if champion is not None:
        evaluations["champion"], champion_mode, band_basis = _champion_evaluation(
            store, champion, past, data, queries, window, start)
        checkpoint()
    # Price bands of the champion's values for both: banded by its own value, each model's "50-100"
    # held other sales, and a contender closer on every sale could lose a band.
    evaluations["contender"], _ = _evaluation("contender", contender_eval, data, queries, window, band_basis)
    floor = floor_before(data.market, queries["ts"])
    floor_metrics = valuation_metrics(floor, window["price"].to_numpy())
    decision = gates.decide(evaluations["contender"], evaluations.get("champion"), floor_metrics, config)
    # The diagnostics of the version, on the same window: the contender's fit is reused, only the
    # learning curve's smaller fits (and its earlier splits) are new.
    window_numbers, diagnostics = pipeline.holdout_evaluation(data, start, params, settings.learning_curve_splits,
                                                              holdout_model=contender_eval)
    checkpoint()
    model = estimator.fit(data, params)
    numbers = {
        "window": {"from": iso(start.to_pydatetime()), "to": iso(end.to_pydatetime()), "n_sales": len(window),
                   "days": settings.gate_window_days,
                   # earlier than `days` before the last sale, to hold min_eval_n sales (gates.window_start)
                   "widened_to_min_sales": config.min_eval_n if widened else None},
        "contender": evaluations["contender"].metrics,
        "champion": evaluations["champion"].metrics if "champion" in evaluations else None,
        "champion_scored_as": champion_mode,
        "previous_day_floor": floor_metrics,
        "params": params.as_dict(),
        # No estimator here can use a GPU yet: say where training really ran.
        "device": {"requested": settings.device, "used": "cpu"},
    }
    curve = {key: window_numbers[key] for key in ("learning_curve", "learning_curve_split_starts")
             if key in window_numbers}
    return TrainOutcome(model, data, decision, numbers, champion.id if champion else None, diagnostics, curve or None)


def gate_window_start(data: MarketData, settings: Settings) -> tuple[pd.Timestamp, bool]:
    """Where a sales market's gate window starts (gates.window_start: the last gate_window_days,
    reaching back to hold the eval_n check's sales), and whether it reached back."""
    return gates.window_start(data.sales["ts"], settings.gate_window_days,
                              kinds.UNIQUE.gate_config(settings).min_eval_n, keep_before=estimator.MIN_TRAINING_SALES)


def _train_and_gate_daily(settings: Settings, overrides: dict,
                          checkpoint: Callable[[], None] = _no_checkpoint) -> TrainOutcome:
    """train_and_gate for a daily-priced collection: contender and champion recipes fitted on
    the days before the gate window (or the champion's artifact when it was trained before it),
    both scored on every card-day of the window, the gates applied, then the contender fitted on
    everything. The previous price is recorded as the baseline (not a hard gate, see kinds.py)."""
    params = kinds.DAILY.params(overrides)
    store = get_store(settings)
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        data = kinds.DAILY.load(session, coll)
        champion = get_alias(session, coll, CHAMPION)
    if data.prices.empty:
        raise NothingToTrain(f"no prices to train on in {coll.slug}: load prices first")
    end = data.last_day
    # The last gate_window_days priced days, by the fit's own rule: after a gap in the prices the
    # last calendar days held only the day after it, no card had a fair value on it, and the gates
    # rejected every request with "eval_n 0". Without a gap these are the last calendar days.
    start = kinds.daily.last_priced_days_start(data, settings.gate_window_days)
    past = data.before(start)
    try:
        contender_model = kinds.daily.fit(past, params)
    except kinds.daily.TooFewPrices as exc:  # say which prices: those before the window, not all of them
        raise kinds.daily.TooFewPrices(f"before the gate window from {start:%Y-%m-%d}: {exc}") from None
    contender, rows = kinds.DAILY.evaluation("contender", contender_model, data, start)
    evaluations = {"contender": contender}
    checkpoint()
    champion_mode = None
    if champion is not None:
        champion_end = pd.Timestamp(champion.data_end).tz_convert("UTC").tz_localize(None)
        if champion_end < start:
            champion_model, champion_mode = load_model(store, champion), "artifact"
        else:
            recipe = {k: v for k, v in champion.params.items() if k in kinds.daily.DailyParams.__dataclass_fields__}
            champion_model, champion_mode = kinds.daily.fit(past, kinds.DAILY.params(recipe)), "recipe refit"
        evaluations["champion"] = kinds.DAILY.evaluation("champion", champion_model, data, start)[0]
        checkpoint()
    baseline = kinds.DAILY.baseline(data, rows)
    decision = gates.decide(contender, evaluations.get("champion"), baseline, kinds.DAILY.gate_config(settings))
    model = kinds.daily.fit(data, params)
    numbers = {
        "window": {"from": iso(start.to_pydatetime()), "to": iso(end.to_pydatetime()), "n_card_days": len(rows)},
        "contender": contender.metrics,
        "champion": evaluations["champion"].metrics if "champion" in evaluations else None,
        "champion_scored_as": champion_mode,
        "previous_price": baseline,
        "params": params.as_dict(),
        "chosen": {"window": model.window, "alpha": model.alpha},
        "device": {"requested": settings.device, "used": "cpu"},
    }
    return TrainOutcome(model, data, decision, numbers, champion.id if champion else None)


# The champion's side of the gates depends only on the champion, the data and the window (a
# recipe refit is seeded), so a worker that trains several requests against one champion scores
# it once: a small contender's train_and_gate took 24 s with the refit, 14 s without (pyinstrument).
_champion_evaluations: dict[tuple, tuple[gates.Evaluation, str, np.ndarray]] = {}


_champion_evaluations_lock = threading.Lock()


def _champion_evaluation(store, champion: ModelVersion, past: MarketData, data: MarketData, queries: pd.DataFrame,
                         window: pd.DataFrame, start: pd.Timestamp) -> tuple[gates.Evaluation, str, np.ndarray]:
    """(its evaluation, how it was scored, its values of the window's sales)."""
    key = (champion.id, data_fingerprint(data), start)
    with _champion_evaluations_lock:
        if key in _champion_evaluations:
            return _champion_evaluations[key]
    champion_end = pd.Timestamp(champion.data_end).tz_convert("UTC").tz_localize(None)
    if champion_end < start:
        champion_model, mode = load_model(store, champion), "artifact"
    else:
        recipe = {k: v for k, v in champion.params.items() if k in estimator.TrainParams.__dataclass_fields__}
        champion_model, mode = estimator.fit(past, estimator.TrainParams(**recipe)), "recipe refit"
    evaluation, fair = _evaluation("champion", champion_model, data, queries, window)
    result = (evaluation, mode, fair)
    with _champion_evaluations_lock:
        _champion_evaluations.clear()  # one champion and data version at a time
        _champion_evaluations[key] = result
    return result


def data_fingerprint(data: MarketData) -> str:
    """The sales and market days a gate reads, as one digest: counts and the last time stayed the
    same under a floor revised in place, or a late sale that flagged a stored one as a wash trade
    (one clean sale in, one out), and the cache above gave the champion's score on the data before."""
    sales = data.sales[[c for c in ("event_id", "ts", "item_key", "price", "hour_precision") if c in data.sales]]
    digest = hashlib.sha256()
    for frame in (sales, data.market[["day", "floor", "eth_usd"]]):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _evaluation(name: str, model: estimator.FairValueModel, data: MarketData, queries: pd.DataFrame,
                window: pd.DataFrame, band_basis: np.ndarray | None = None) -> tuple[gates.Evaluation, np.ndarray]:
    """The model scored on the window, and its values of the window's sales. The segments' price
    bands are of `band_basis` (values of the same sales) when given, else of the model's own."""
    feats = build_features(data, model.vocab, queries)
    pred = model.predict_features(feats)
    # Monotone in the floor: the same item in a market 10 % higher must not be worth less.
    lifted = feats.copy()
    lifted["floor"] = lifted["floor"] * 1.1
    monotone = bool(np.all(model.predict_features(lifted)["fair_value"].to_numpy()
                           >= pred["fair_value"].to_numpy() * (1 - 1e-9)))
    fair, price = pred["fair_value"].to_numpy(), window["price"].to_numpy()
    segments = item_segments(data.items, window["item_key"], fair if band_basis is None else band_basis)[
        list(GATE_SEGMENTATIONS)]
    return gates.Evaluation(
        name=name,
        metrics=valuation_metrics(fair, price, pred["p10"].to_numpy(), pred["p90"].to_numpy()),
        segments=segment_metrics(fair, price, segments, pred["p10"].to_numpy(), pred["p90"].to_numpy()),
        sanity=gates.sanity(fair, pred["p10"].to_numpy(), pred["p90"].to_numpy(), monotone),
    ), fair

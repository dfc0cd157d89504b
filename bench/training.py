"""Training speed: retrain on all bundled sales, and replay one quarter.

    python bench/training.py [--quarter 2021-10-01] [--skip-replay]

1. `estimator.fit` on every bundled sale (default parameters: five quantile models, the median
   and the two bands' ends, and a ridge regression) — the work a training worker does for a
   contender — split into building the training frame and fitting.
   Baseline of the same run: one bare HistGradientBoostingRegressor (squared error, same
   bins and leaves, the median model's rounds) fitted on the same matrix.
2. The replay of one quarter at daily cadence (`fairvalue replay`, retraining weekly per the
   staleness rule): seconds, trainings and nowcasts done, seconds per training.

Both run on FAIRVALUE_TRAIN_THREADS OpenMP threads (`--threads` overrides it), with `--busy N`
other processes spinning on the CPU meanwhile, as on a shared host (the baseline too).

No database: the market comes from data/cryptopunks/ through the same validation as ingest.
Target (issue #6): retrain <= 20 s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/ must not shadow the project's packages

from bench import harness  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quarter", default="2021-10-01", help="first day of the replayed quarter")
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--max-iter", type=int, default=None, help="boosting rounds (default: the service's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OpenMP threads of the fits (default: FAIRVALUE_TRAIN_THREADS)")
    parser.add_argument("--busy", type=int, default=0, help="other processes spinning on the CPU meanwhile")
    args = parser.parse_args()
    with harness.busy_processes(args.busy):
        measure(args)


def measure(args: argparse.Namespace) -> None:
    from fairvalue import evaluation
    from fairvalue.settings import get_settings
    from models import estimator

    settings = get_settings()
    data = evaluation.load_market(settings, "bundled", [], None, None)
    rounds = {"max_iter": args.max_iter} if args.max_iter else {}
    params = estimator.TrainParams(**{**settings.train_params(), **rounds})
    threads = args.threads or settings.train_threads
    print(f"{threads} OpenMP thread(s), {args.busy} busy process(es) beside")
    with estimator.training_threads(threads):
        fit_and_replay(args, settings, data, params)


def fit_and_replay(args, settings, data, params) -> None:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor

    from fairvalue import evaluation
    from models import estimator
    from models.features import TraitVocabulary, model_columns

    timer = harness.Timer()
    feats, target, _ = estimator.training_frame(data, TraitVocabulary(data.items))
    frame_s = timer.lap()
    model = estimator.fit(data, params)
    fit_s = timer.lap()
    x = feats[model_columns(feats)].to_numpy(dtype=float)
    HistGradientBoostingRegressor(max_iter=params.max_iter, learning_rate=params.learning_rate,
                                  max_bins=params.max_bins, max_leaf_nodes=params.max_leaf_nodes,
                                  min_samples_leaf=params.min_samples_leaf,
                                  random_state=params.random_state).fit(x, target)
    bare_s = timer.lap()
    print(f"retrain on {len(data.sales):,} bundled sales ({x.shape[0]:,} x {x.shape[1]} matrix): {fit_s:.2f} s "
          f"(training frame alone {frame_s:.2f} s)")
    print(f"baseline: one bare HistGradientBoostingRegressor on the same matrix {bare_s:.2f} s; "
          f"retrain = {fit_s / bare_s:.2f}x (it builds the features and fits {len(model.estimators)} quantile models"
          f"{' and a ridge regression' if model.linear is not None else ''})")
    print(f"retrain {fit_s:.1f} s [target <= 20 s: {harness.verdict(fit_s <= 20)}]")
    if args.skip_replay:
        return
    start = pd.Timestamp(args.quarter)
    end = start + pd.DateOffset(months=3)
    timer.lap()
    result = evaluation.evaluate(data, start, end, "1d", settings)
    replay_s = timer.lap()
    trainings = len(result.report["trainings"])
    print(f"replay {start:%Y-%m-%d} .. {end:%Y-%m-%d} daily: {replay_s:.1f} s, {trainings} trainings, "
          f"{result.report['sales_in_window']} sales scored; {replay_s / max(trainings, 1):.1f} s per training "
          f"= {replay_s / max(trainings, 1) / fit_s:.2f}x one retrain")


if __name__ == "__main__":
    main()

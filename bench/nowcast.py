"""Nowcast at scale: the 10,000 bundled punks end to end, then synthetic collections.

    python bench/nowcast.py                          # 10k, 100k and 1M items, archive to moto S3
    python bench/nowcast.py --sizes 10000 --repeat 5 --archive dir

For each size, in a fresh process against a scratch PostgreSQL database: `pipeline.nowcast`
(load market from PostgreSQL -> features -> predict -> write snapshot -> publish (pointer
switch) -> archive csv.gz), its stages, seconds per item, and the process's peak RSS.
Baseline of the same run: the bare `predict` of the quantile estimators (median and band) on the same
feature matrix of the 10,000 punks. Synthetic collections come from bench/synthetic.py
(generated here, seeded; nothing is stored in the repo) and share the bundled champion
(same trait vocabulary).

Targets (issue #6): 10k <= 1.5 s and <= 2x bare predict; 1M <= 60 s in <= 4 GiB; seconds
per item flat (linear cost).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/ must not shadow the project's packages

from bench import harness  # noqa: E402

BUNDLED = "cryptopunks"
GIB = 1024.0


def synthetic_slug(size: int) -> str:
    return f"synthetic-{size}"


# --- child steps (each runs in its own process) -----------------------------------------------

def setup_bundled() -> dict:
    """Seed the bundled market, fit the champion with the default parameters, register it."""
    from fairvalue import pipeline
    from fairvalue.settings import get_settings
    from models import estimator
    from storage.artifacts import get_store
    from storage.db import session_scope
    from storage.market import load_market_data
    from storage.registry import promote, register_version

    settings = get_settings()
    pipeline.seed(settings)
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        data = load_market_data(session, coll)
    # FAIRVALUE_TRAIN_MAX_ITER (--train-max-iter) sizes the fit; the default is the service's.
    params = estimator.TrainParams(**settings.train_params())
    model = estimator.fit(data, params)
    with session_scope() as session:
        coll = pipeline.ensure_collection_of(session, settings)
        version = register_version(session, get_store(settings), coll, model, {}, None, None, len(data.sales), "bench")
        promote(session, coll, version)
    return {"n_sales": len(data.sales)}


def setup_synthetic(size: int, seed: int) -> dict:
    """Generate a collection of `size` items, COPY it into PostgreSQL, give it the bundled champion."""
    from bench import synthetic
    from fairvalue.settings import get_settings
    from models.features import ITEM_ATTRIBUTES
    from storage.bulk import copy_rows
    from storage.db import session_scope
    from storage.ingest import ensure_collection, put_market_days
    from storage.registry import get_alias, promote
    from storage.tables import ModelVersion, utcnow

    settings = get_settings()
    timer = harness.Timer()
    coll_data = synthetic.generate(size, seed)
    generated = timer.lap()
    with session_scope() as session:
        bundled = ensure_collection(session, BUNDLED)
        coll = ensure_collection(session, synthetic_slug(size))
        champion = get_alias(session, bundled, "champion")
        copy = ModelVersion(**{k: v for k, v in champion.model_dump().items() if k not in ("id", "parent_id")})
        copy.collection_id = coll.id
        session.add(copy)
        session.flush()
        promote(session, coll, copy)
        items = coll_data.items
        attributes = items[list(ITEM_ATTRIBUTES)].to_dict("records")  # stored as the seed stores a punk's
        copy_rows(session, "items", ("collection_id", "item_key", "item_type", "attributes"), (
            (coll.id, key, kind, {"accessory_count": int(count), "accessories": list(acc), **extra})
            for key, kind, count, acc, extra in zip(items.index, items["item_type"], items["accessory_count"],
                                                    items["accessories"], attributes, strict=True)),
            json_columns=("attributes",))
        sales, now = coll_data.sales, utcnow()
        copy_rows(session, "sales", ("collection_id", "event_id", "item_key", "ts", "price", "seller", "buyer",
                                     "source", "content_hash", "ingested_at"), (
            (coll.id, e, k, t, p, "", "", "synthetic", "", now)
            for e, k, t, p in zip(sales["event_id"], sales["item_key"], sales["ts"].dt.tz_localize("UTC"),
                                  sales["price"], strict=True)))
        market = coll_data.market  # a few thousand days: the write path itself, revisions included
        put_market_days(session, coll, {d.date(): {"floor": None if f != f else f, "eth_usd": None if e != e else e}
                                        for d, f, e in zip(market["day"], market["floor"], market["eth_usd"],
                                                           strict=True)})
    _ = settings
    return {"generate_s": generated, "load_s": timer.lap(), "n_sales": len(sales)}


def measure(repeat: int, bare: bool, profile: str | None = None) -> dict:
    """`pipeline.nowcast` `repeat` times in this process (a worker is long-lived), and optionally
    the bare predict of the estimators on the same feature matrix. With `profile`, one more
    nowcast runs under pyinstrument (not timed) and its call tree is written there as text."""
    import pandas as pd

    from fairvalue import pipeline
    from fairvalue.settings import get_settings

    settings = get_settings()
    runs = []
    for _ in range(repeat):
        timer = harness.Timer()
        result = pipeline.nowcast(settings)
        total = timer.lap()
        if result.archive_error:
            raise RuntimeError(f"archive failed: {result.archive_error}")
        runs.append({"total": total, **result.seconds, "n_items": result.n_items, "published": result.published})
    out = {"runs": runs, "peak_rss_mib": harness.peak_rss_mib()}
    if profile:
        from pyinstrument import Profiler

        with Profiler(interval=0.0005) as profiler:
            pipeline.nowcast(settings)
        Path(profile).write_text(profiler.output_text(unicode=True, show_all=False))
    if bare:
        from models.features import build_features
        from storage.artifacts import get_store

        _, _, model, data, _ = pipeline.champion_and_market(settings, get_store(settings))
        as_of = pd.Timestamp.now(tz="UTC").tz_localize(None)
        queries = pd.DataFrame({"item_key": data.items.index.to_numpy(), "ts": as_of})
        timer = harness.Timer()
        feats = build_features(data, model.vocab, queries)
        out["features_s"] = timer.lap()
        x = feats[model.columns].to_numpy(dtype=float)
        if model.bins is not None:  # the estimators take bin numbers (models/binning.py)
            x = model.bins.transform(x)
        samples = []
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=settings.predict_threads, user_api="openmp"):  # as the nowcast runs it
            for _ in range(max(repeat, 3)):
                timer.lap()
                for quantile_model in model.estimators.values():
                    quantile_model.predict(x)
                samples.append(timer.lap())
        out["bare_predict_s"] = harness.best(samples)
        out["matrix"] = list(x.shape)
    return out


# --- the run ------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated; 10000 is the bundled market, others are synthetic")
    parser.add_argument("--repeat", type=int, default=3, help="nowcasts per size under 1M (best is reported)")
    parser.add_argument("--archive", choices=("s3", "dir"), default="s3")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed to each step")
    parser.add_argument("--train-max-iter", type=int, default=None,
                        help="boosting rounds of the champion (default: the service default); tests use few")
    parser.add_argument("--profile", metavar="DIR",
                        help="also profile one more nowcast per size (pyinstrument, from the bench extra); "
                             "writes DIR/nowcast-SIZE.txt")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.step == "setup-bundled":
        return harness.emit(setup_bundled())
    if args.step == "setup-synthetic":
        return harness.emit(setup_synthetic(args.size, args.seed))
    if args.step == "measure":
        return harness.emit(measure(args.repeat, args.bare, args.profile))

    sizes = [int(s) for s in args.sizes.split(",")]
    me = str(Path(__file__).resolve())
    with harness.scratch_database() as url, harness.artifact_store(args.archive) as store_env, \
            tempfile.TemporaryDirectory(prefix="fairvalue-bench-var-") as var:
        env = {"FAIRVALUE_DATABASE_URL": url, "FAIRVALUE_VAR_DIR": var, "FAIRVALUE_CODE_VERSION": "bench",
               **store_env}
        if args.train_max_iter:
            env["FAIRVALUE_TRAIN_MAX_ITER"] = str(args.train_max_iter)
        setup = harness.run_child([me, "--step", "setup-bundled"], env, args.timeout)
        print(f"setup: bundled market seeded ({setup['n_sales']} sales), champion fitted; archive: {args.archive}")
        results = {}
        for size in sizes:
            slug = BUNDLED if size == 10_000 else synthetic_slug(size)
            if slug != BUNDLED:
                made = harness.run_child([me, "--step", "setup-synthetic", "--size", str(size),
                                          "--seed", str(args.seed)], env, args.timeout)
                print(f"setup: {size:,} synthetic items, {made['n_sales']:,} sales "
                      f"(generated {made['generate_s']:.1f} s, COPY {made['load_s']:.1f} s)")
            repeat = args.repeat if size < 1_000_000 else 1
            step = [me, "--step", "measure", "--repeat", str(repeat)] + (["--bare"] if slug == BUNDLED else [])
            if args.profile:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                step += ["--profile", str(Path(args.profile).resolve() / f"nowcast-{size}.txt")]
            results[size] = harness.run_child(step, {**env, "FAIRVALUE_COLLECTION": slug}, args.timeout)
        report(results)


def report(results: dict[int, dict]) -> None:
    stages = ("load", "value", "write", "publish", "archive")
    print()
    print(f"{'items':>10} {'total s':>8} " + " ".join(f"{s:>8}" for s in stages)
          + f" {'us/item':>8} {'peak RSS':>9}")
    for size, r in results.items():
        run = min(r["runs"], key=lambda x: x["total"])
        print(f"{size:>10,} {run['total']:8.2f} " + " ".join(f"{run.get(s, 0):8.2f}" for s in stages)
              + f" {run['total'] / size * 1e6:8.1f} {r['peak_rss_mib'] / GIB:7.2f} GiB")
    if 10_000 in results:
        r = results[10_000]
        total = min(x["total"] for x in r["runs"])
        bare = r["bare_predict_s"]
        print(f"\nbaseline: bare predict (same threads), every estimator, {r['matrix'][0]:,} x {r['matrix'][1]} matrix "
              f"{bare:.3f} s (features alone {r['features_s']:.3f} s)")
        print(f"10k nowcast {total:.2f} s = {total / bare:.2f}x bare predict   "
              f"[target <= 1.5 s: {harness.verdict(total <= 1.5)}; <= 2x: {harness.verdict(total <= 2 * bare)}]")
    sizes = sorted(results)
    if len(sizes) > 1:
        per_item = {s: min(x["total"] for x in results[s]["runs"]) / s for s in sizes}
        growth = ", ".join(f"{s:,}: {per_item[s] / per_item[sizes[0]]:.2f}" for s in sizes[1:])
        print(f"seconds per item relative to {sizes[0]:,} items: {growth}  (1.0 = linear)")
    if 1_000_000 in results:
        r = results[1_000_000]
        total, rss = r["runs"][0]["total"], r["peak_rss_mib"] / GIB
        print(f"1M nowcast {total:.1f} s, peak RSS {rss:.2f} GiB   "
              f"[target <= 60 s: {harness.verdict(total <= 60)}; <= 4 GiB: {harness.verdict(rss <= 4)}]")
    print(f"(cores visible: {os.cpu_count()})")


if __name__ == "__main__":
    main()

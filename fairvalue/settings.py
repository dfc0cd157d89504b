"""Every tunable of the service, read from FAIRVALUE_* environment variables.

The defaults are the embedded ones: an SQLite database, a filesystem broker and a local
artifact directory under ./var, so `fairvalue up` needs no servers. Point the URLs at
PostgreSQL, Redis and S3 for production.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The known development value (bandit B105 is right that it is a password): the API refuses it on real servers.
DEV_WEBHOOK_SECRET = "dev-webhook-secret-change-me"  # nosec B105


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FAIRVALUE_", env_file=".env", extra="ignore")

    # Where things live.
    var_dir: Path = Field(Path("var"), description="Working directory for embedded state.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite in var_dir.")
    database_pool_size: int = Field(
        16, ge=1, description="PostgreSQL connections kept open per process. Below the API's concurrent requests, "
        "every extra request opened and closed a connection of its own (a profile of bench/ingest.py's webhooks).")
    broker_url: str = Field("", description="Celery broker URL; empty means the filesystem broker.")
    artifacts_url: str = Field("", description="s3://bucket/prefix or a local directory.")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (MinIO, moto); None means AWS.")
    s3_region: str = Field("us-east-1", description="Region of the S3 client (MinIO and moto take any).")
    s3_connect_timeout_seconds: float = Field(5.0, gt=0, description="S3 calls that may wait (model artifacts, "
                                              "the hourly archive retry): timeout of one connect.")
    s3_read_timeout_seconds: float = Field(30.0, gt=0, description="... timeout of one socket read (an S3 that "
                                           "accepts and never answers waits this long per attempt).")
    s3_max_attempts: int = Field(4, ge=1, description="... attempts in all, the first included: a hung S3 holds "
                                 "such a call about 4 x 30 s.")
    s3_short_timeout_seconds: float = Field(
        3.0, gt=0, description="Connect and read timeout of the S3 calls that have a way out: the nowcast's "
        "snapshot archive (and the late archives it retries; the snapshot is published before it, and the hourly "
        "archive task retries a failed one on the patient budget), a shadow model's artifact (the shadow is "
        "skipped with its reason) and a snapshot file's download (rebuilt from the rows). A hung S3 holds them "
        "about this long, not minutes.")
    s3_short_max_attempts: int = Field(1, ge=1, description="... attempts in all of those calls.")
    broker_transport_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra kombu transport options as JSON, over the defaults of "
        "tasks/app.py, e.g. {\"visibility_timeout\": 8100}.")
    broker_send_retries: int = Field(
        6, ge=0, description="A message a worker or beat sends (a training request, a follow-up nowcast, a "
        "periodic task) while the broker is unreachable is tried again up to this many times, 0.5 s, 1 s, "
        "1.5 s and then 2 s apart (6: about 9 s), so a Redis restart does not fail the task that sends it. The "
        "API's and the commands' sends are not retried: they answer at once that the message was not sent "
        "(docs/architecture.md). 0: workers and beat fail at once too.")
    data_dir: Path = Field(PROJECT_ROOT / "data", description="Bundled market data.")

    # Market.
    collection: str = Field("cryptopunks", description="The collection commands, tasks and the unprefixed "
                            "routes (/v1/items, the pages at /) work on when none is named; the webhooks' too.")

    # Ingest validation.
    min_floor_fraction: float = Field(
        0.2, description="A sale priced under this fraction of the floor known before its day is rejected."
    )
    nowcast_trigger_sales: int = Field(
        1, description="New sales since the published snapshot that ask for an out-of-cycle nowcast."
    )

    # Webhooks.
    webhook_secret: SecretStr = Field(SecretStr(DEV_WEBHOOK_SECRET), description="Only from the environment; "
                                      "the API refuses this development value outside embedded/dev mode.")
    dev_mode: bool = Field(False, description="Allow development secrets on real servers (never in production).")
    webhook_tolerance_seconds: int = Field(300, description="A signed webhook older or newer than this is "
                                           "refused (401); the same delivery again within it is a replay (409).")
    max_body_bytes: int = Field(1_000_000, description="Request bodies over this many bytes are refused (413).")
    webhook_follow_up_seconds: float = Field(
        2.0, ge=0, description="A webhook's follow-up check (fairvalue.ingest.after_sales, after_listings) runs "
        "this long after the first accepted call; calls accepted meanwhile share it, since it counts what is "
        "stored then.")
    listing_nowcast_min_seconds: float = Field(
        120.0, ge=0, description="The nowcast a listing asks for comes at least this long after the published "
        "snapshot's read: a steady feed of listings gets one nowcast per interval, not one after another (each "
        "writes every item's row).")

    operator_token: SecretStr = Field(SecretStr(""), description="A bootstrap operator token (`Authorization: "
                                      "Bearer`), accepted beside those `fairvalue tokens create` stores; empty: "
                                      "only stored tokens.")

    # Serving.
    api_host: str = Field("127.0.0.1", description="Address `fairvalue api` listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port `fairvalue api` listens on.")
    rate_limit_per_minute: int = Field(300, description="Public GET requests per client IP and minute (429 past "
                                       "it); 0 turns the limit off. Counted in Redis when the broker is Redis.")
    api_snapshot_check_seconds: float = Field(
        1.0, ge=0, description="The API answers item reads from the published snapshot held in memory and "
        "re-reads the published pointer at most this often per collection: a snapshot published by another "
        "process is served at most this many seconds late (one published in the API process at once). "
        "0 reads the pointer on every request.")
    api_snapshot_cache_max_items: int = Field(
        250_000, ge=0, description="A published snapshot with more items than this is not held in memory "
        "(about 0.6 KB per item: 6 MB for the 10k punks, 150 MB at this bound, per API process); its reads "
        "go to the database, one statement each.")
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS; empty means CORS is off.")
    worker_metrics_port: int = Field(0, description="Port on which each Celery worker serves its Prometheus "
                                     "metrics; 0 means off.")

    # Model.
    code_version: str = Field("", description="Recorded on model versions; empty means `git rev-parse`.")
    random_seed: int = Field(7, description="Seed of every training's estimators.")
    # The service trains with these rounds and seed, not TrainParams' defaults (tests set few rounds);
    # a unit test holds the two defaults equal.
    train_max_iter: int = Field(200, ge=1, description="Boosting rounds of the median model.")
    train_band_max_iter: int = Field(50, ge=1, description="Boosting rounds of each of the band's models (at least "
                                     "10, at most FAIRVALUE_TRAIN_MAX_ITER).")
    holdout_days: int = Field(30, description="Forward window kept out of training to score a version.")
    learning_curve_splits: int = Field(3, ge=0, description="Forward windows the learning curve pools: the "
                                       "holdout (the gates' window in a worker's training) and those of its length "
                                       "before it; each adds up to len(LEARNING_FRACTIONS) fits to a training. 0: "
                                       "no learning curve.")
    retrain_max_age_days: float = Field(7, description="A champion trained on data older than this is stale "
                                        "(the policy retrains it only when sales, or prices, arrived after its "
                                        "training data ended).")
    retention_days: float = Field(
        14, ge=1, le=36500, description="Snapshots older than this, once archived, keep only the rows their "
        "readers still need (the last of each day whole, and each sold item's value the track record scores); "
        "listing events older than this and than listing_retention_days that a later event of the item and "
        "source replaced are dropped (storage/retention.py).")
    listing_retention_days: float = Field(
        90, ge=1, le=36500, description="Listing events a later event replaced are dropped once older than "
        "this and than retention_days: until then the ask track record (/performance ask_signals) judges them; "
        "asks listed before it are judged only if never replaced (storage/retention.py).")
    audit_retention_days: float = Field(
        90, ge=1, le=36500, description="Webhook deliveries (webhook_deliveries) received and task runs "
        "(task_runs) started longer ago than this are deleted by the same retention pass, oldest first and at "
        "most 50,000 of each per pass; every task's latest run for each collection and any run still running are kept "
        "(storage/retention.py). A delivery is never deleted while a copy of it could still pass the signature "
        "check: that ends 2 x webhook_tolerance_seconds after it was received. A dropped listing event's id "
        "(dropped_listings) is forgotten this long after it was dropped: sent again before, it is a duplicate.")

    predict_threads: int = Field(1, ge=1, description="OpenMP threads of one nowcast's predict. One per worker "
                                 "process: scale out with more worker processes (docs/scaling.md), not threads.")
    train_threads: int = Field(1, ge=1, le=1024, description="OpenMP threads of one training: a training "
                               "request's fits, `fairvalue train` (and `up`'s first training), and a replay's "
                               "retrains. On a 2-core host with one other busy process, two threads spinning at OpenMP "
                               "barriers made a retrain 2.6x slower than one thread, and 8.7x with two; idle, two "
                               "were 1.2x faster (bench/training.py --busy, docs/benchmarks.md). Raise it on a "
                               "training host whose cores are the training's own.")
    device: str = Field("cpu", description="cpu or cuda. The scikit-learn estimators run on the CPU; each "
                        "training request's decision records the device asked for and the one used.")

    # Model lifecycle (issue #4): policy, training under a lease, gates, monitor.
    training_lease_seconds: int = Field(600, description="A claim on a training request lasts this unless renewed.")
    training_start_sweep: bool = Field(
        True, description="A training worker, as it starts, asks for one training sweep on its own queue for once "
        "a lease has run out: the restart of a worker killed whole trains its request then, not at beat's hourly "
        "sweep.")
    training_max_attempts: int = Field(3, description="Tries of one training request before it is failed.")
    training_retry_backoff_seconds: int = Field(60, description="Delay before a failed training is retried; "
                                                "far under the broker's visibility timeout.")
    training_time_limit_seconds: int = Field(
        7200, gt=0, description="A training that runs longer is stopped: Celery's soft time limit ends the attempt "
        "(the request is retried or failed as after any failure, its run recorded failed with \"time limit\"), and "
        "its heartbeat stops renewing the lease from then on, so a training that does not stop loses the lease "
        "and the sweep retries or fails the request. The prefork pool kills the process "
        "FAIRVALUE_TASK_KILL_GRACE_SECONDS later (the hard limit). The solo pool (`fairvalue up`) enforces "
        "no Celery limit: there the training checks the limit between its stages and ends the attempt the same "
        "way at the first check past it (a stage that outlasts its lease records its time-out too, unless the "
        "sweep gave the request to a newer attempt meanwhile). The training worker's own value applies: a "
        "message carries no time limit (tasks.app.FairvalueCelery.send_task).")
    nowcast_time_limit_seconds: int = Field(
        900, gt=0, description="A nowcast that runs longer is stopped (Celery's soft time limit; its run is "
        "recorded failed, the published snapshot stays) and killed FAIRVALUE_TASK_KILL_GRACE_SECONDS later. "
        "Not under the solo pool (`fairvalue up`), which enforces no time limit.")
    task_kill_grace_seconds: int = Field(
        300, ge=1, description="After a task's soft time limit, how long it has to end before the prefork pool "
        "kills its process (Celery's hard `time_limit`).")
    sweep_stale_minutes: int = Field(30, description="A queued request not claimed for this long is republished.")
    beat_lock_check_seconds: float = Field(
        60, gt=0, description="How often beat checks it still holds the one-beat lock (a dropped database "
                              "connection releases it; another beat may have taken it since).")
    gate_window_days: int = Field(14, description="The forward window contender and champion are scored on "
                                  "(reaching back further when it holds fewer than 50 sales).")
    gate_mape_margin: float = Field(0.02, description="A contender is promoted when its MAPE is this share under "
                                    "the champion's (better by less: shadowed); models/gates.py.")
    gate_max_abs_bias: float = Field(0.05, description="A contender whose median signed error is further from 0 "
                                     "than this is rejected.")
    gate_segment_tolerance: float = Field(0.10, description="A contender is rejected when a segment's MAPE "
                                          "(a type, or a band of the fair value, with 30 sales or more; "
                                          "lifecycle.GATE_SEGMENTATIONS) is this share worse than the champion's.")
    gate_coverage_min: float = Field(0.70, description="A contender whose band holds fewer of the window's sales "
                                     "is rejected.")
    gate_coverage_max: float = Field(0.90, description="... or more of them (a band too wide says nothing).")
    policy_live_window_days: int = Field(7, description="The retrain policy reads the champion's live error over "
                                         "this many days of sales.")
    policy_max_live_mape: float = Field(0.20, description="The policy asks for a training when the live MAPE is "
                                        "over this.")
    # Drift compares the champion's last training month with the last month of sales (pipeline.drift).
    # Measured on the bundled data: a fresh champion shows 0 and 0; one three months stale (trained
    # before 2021-10-01, December 2021 sales) shows share 0.22 and prediction PSI 0.14 (0.16 when first
    # measured, with an earlier model; both over the 0.10 threshold).
    policy_max_prediction_psi: float = Field(0.10, description="... or the predictions' PSI between the "
                                             "champion's last training month and the last month is over this.")
    policy_max_share_drifted: float = Field(0.15, description="... or the share of features that drifted is over "
                                            "this.")
    shadow_days: float = Field(3, description="How long a shadowed contender runs beside the champion.")
    probation_days: float = Field(7, description="How long after a promotion the monitor may roll it back.")
    rollback_margin: float = Field(0.10, description="Roll back when live MAPE is this much worse than before.")
    monitor_min_sales: int = Field(20, description="The monitor judges a promotion only on at least this many "
                                   "live sales.")

    # Signals.
    buy_below: float = Field(0.10, description="BUY when the market price (an open ask, else a recent sale) is "
                             "this share under the fair value.")
    sell_above: float = Field(0.15, description="SELL when it is this share over.")
    signal_max_age_days: float = Field(30, description="A last sale older than this is no market price. This and "
                                       "the two thresholds above are recorded with each snapshot by the worker "
                                       "that makes it, with the price each signal read and its deviation; the API "
                                       "answers those, and quotes at the snapshot's thresholds (for a snapshot from "
                                       "before migration 0019 it derives a signal's price and deviation at them; "
                                       "at its own before migration 0017).")
    market_stale_after_days: float = Field(
        7, ge=0, description="A market with no sale and no floor for longer than this is valued as of that long "
                             "after its last input, not extrapolated to now (0: always now).")
    signal_horizon_days: float = Field(30, description="How long a BUY/SELL has to prove right.")
    signal_gain: float = Field(0.10, description="Market-adjusted move that makes a BUY (up) or SELL (down) right.")
    backtest_horizon_days: float = Field(90, description="A backtest position closes at the next resale within this.")

    # Trading cards (issue #7): a second collection, a fixed universe of cards with daily prices.
    cards_config: Path = Field(PROJECT_ROOT / "config" / "cards.yaml", description="The card universe.")
    card_price_api_url: str = Field("https://www.pokemonpricetracker.com/api/v2",
                                    description="Base URL of a PokemonPriceTracker-v2-shaped price API.")
    card_price_api_key: SecretStr = Field(SecretStr(""), description="Bearer key; empty: the collector skips.")
    card_price_history_days: int = Field(30, ge=1, le=3650, description="Days of history asked for per card and run.")
    card_price_timeout_seconds: float = Field(10.0, description="Timeout of one price API call.")
    card_price_max_attempts: int = Field(4, description="Tries per card (timeouts, 5xx, 429) before giving up.")
    card_price_backoff_seconds: float = Field(1.0, description="First retry delay; doubles per attempt.")
    card_price_max_wait_seconds: float = Field(120.0, description="Longest Retry-After the collector honours.")
    card_price_time_limit_seconds: int = Field(
        3600, gt=0, description="A card price run that runs longer (the price API's rate limit slowing it) is "
        "stopped (Celery's soft time limit: it keeps and stores the answers it paid for, then is recorded failed; "
        "it is killed if that takes FAIRVALUE_TASK_KILL_GRACE_SECONDS), so it ends before the broker's visibility "
        "timeout, which covers it, would deliver it a second time. A run for a day whose answers are kept stores "
        "from them and asks the API only for the cards they lack. Not under the solo pool (`fairvalue up`), "
        "which enforces no time limit.")
    card_price_max_jump: float = Field(
        4.0, gt=1, description="A card price below 1/this or above this times the median of the card's recent prices "
                               "(card_price_jump_last_n within card_price_jump_window_days before its day) is refused "
                               "and kept as implausible_price, the same for `ingest prices` and the collector; a card "
                               "with no recent price is judged by the batch's next 3 or more prices of it within the "
                               "window after, if it holds them, else not checked. The bundled prices move at most "
                               "1.95x from that median (injected spikes; 99% of day-to-day moves are under 1.24x), "
                               "a decimal slip is 10x.")
    card_price_jump_last_n: int = Field(7, ge=1, description="How many of a card's last prices the jump check's "
                                                            "median is taken over (a week of days: one spike does "
                                                            "not move it).")
    card_price_jump_window_days: int = Field(
        14, ge=1, description="Only prices this many days before a price's day count as recent for the jump check; "
                              "a card whose real move was refused for this long is judged as a card back after a gap "
                              "(card_price_max_jump) and, unless refused there, takes its new level.")
    daily_signal_horizon_days: float = Field(14, description="Daily markets: how long a BUY/SELL has to prove "
                                             "right (7-30 days).")
    daily_signal_gain: float = Field(0.05, description="Daily markets: a BUY is right when the price rises this "
                                     "much within the horizon (a SELL when it falls this much).")

    def train_params(self) -> dict[str, int]:
        """What the service's trainings take from the settings (models.estimator.TrainParams fields);
        a request's own params go over them (lifecycle.gating.train_params)."""
        return {"max_iter": self.train_max_iter, "band_max_iter": self.train_band_max_iter,
                "random_state": self.random_seed}

    def hard_time_limit(self, soft_seconds: int) -> int:
        """Celery's hard time limit for a task stopped at `soft_seconds`: the process is killed then."""
        return soft_seconds + self.task_kill_grace_seconds

    def longest_task_seconds(self) -> int:
        """The longest any task may run: the largest hard time limit (training's by default; the
        tasks without one take seconds to minutes). The broker's visibility timeout and the
        sweep's abandoned runs both follow it."""
        return self.hard_time_limit(max(self.training_time_limit_seconds, self.nowcast_time_limit_seconds,
                                        self.card_price_time_limit_seconds))

    def for_collection(self, slug: str | None) -> Settings:
        """These settings aimed at another collection (tasks and commands carry the slug)."""
        if not slug or slug == self.collection:
            return self
        return self.model_copy(update={"collection": slug})

    def insecure_secrets(self) -> list[str]:
        """Development secrets a deployment on real servers must not run with. The embedded
        setup (SQLite on one machine, `fairvalue up`) and an explicit dev_mode may."""
        if self.dev_mode or not self.database_url:
            return []
        problems = []
        if self.webhook_secret.get_secret_value() in ("", DEV_WEBHOOK_SECRET):
            problems.append("FAIRVALUE_WEBHOOK_SECRET is unset or the development value: set a random secret "
                            "shared with the webhook senders (or FAIRVALUE_DEV_MODE=1 on a development machine)")
        return problems

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'fairvalue.db').resolve()}"

    def resolved_broker_url(self) -> str:
        # The host is a name only (kombu's files have none), given so kombu does not warn it was left out.
        return self.broker_url or "filesystem://localhost/"

    def resolved_artifacts_url(self) -> str:
        return self.artifacts_url or str((self.var_dir / "artifacts").resolve())

    @property
    def listings_kept_days(self) -> float:
        """Every listing event younger than this is still stored (storage.retention, whose rule it
        is; imported here, since the settings load before anything that touches a table)."""
        from storage.retention import listings_kept_days

        return listings_kept_days(self.retention_days, self.listing_retention_days)

    @property
    def broker_folder(self) -> Path:
        """Message folder of the embedded filesystem broker."""
        return (self.var_dir / "broker").resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()

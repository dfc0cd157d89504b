"""Queue names, in one place. Each queue maps to the workers that consume it:

- default  -> `worker` (policy, monitor, training sweep, archive retry): short tasks
- ingest   -> `worker`: follow-ups of webhooks and backfills, the daily card price collection
- nowcast  -> `worker`: valuing the whole collection, a few seconds per run
- training -> `training-worker` (GPU-capable nodes, prefetch 1, its own pool)
"""

DEFAULT = "default"
INGEST = "ingest"
NOWCAST = "nowcast"
TRAINING = "training"

ALL = (DEFAULT, INGEST, NOWCAST, TRAINING)
GENERAL_WORKER_QUEUES = (DEFAULT, INGEST, NOWCAST)

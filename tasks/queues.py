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


def parse_queue_list(values: list[str]) -> list[str]:
    """Queue names as `-Q` takes them, repeated (`-Q default -Q ingest`) or comma-separated
    (`-Q default,ingest`, as celery's own -Q): each once, in the order given."""
    names = [name.strip() for value in values for name in value.split(",")]
    return list(dict.fromkeys(name for name in names if name))


def worker_node_name(consumed: list[str]) -> str:
    """A worker's node name on its host (celery's `%h`), from the queues it consumes: two workers
    on one host, the general one and a training one, need two names, or the queue page and
    Flower see one worker where there are two and a dead one goes unnoticed."""
    if set(consumed) == set(GENERAL_WORKER_QUEUES):
        return "general@%h"
    return "-".join(consumed) + "@%h"

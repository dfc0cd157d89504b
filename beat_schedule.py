"""Every periodic task, its cadence and expiry, in one place. Only one beat may run.

`expires` is about 1.5x the interval: after an outage, a backlog of stale runs is dropped
instead of replayed.
"""

from celery.schedules import crontab

from tasks import names, queues

MINUTE = 60
HOUR = 60 * MINUTE

SCHEDULE = {
    "nowcast-every-30-minutes": {
        "task": names.NOWCAST,
        "schedule": crontab(minute="*/30"),
        "options": {"queue": queues.NOWCAST, "expires": 45 * MINUTE},
    },
    "retrain-policy-daily": {
        "task": names.POLICY,
        "schedule": crontab(minute=15, hour=2),
        "options": {"queue": queues.DEFAULT, "expires": 36 * HOUR},
    },
    "training-sweep-hourly": {
        "task": names.SWEEP,
        "schedule": crontab(minute=5),
        "options": {"queue": queues.DEFAULT, "expires": 90 * MINUTE},
    },
    "archive-retry-hourly": {
        "task": names.ARCHIVE,
        "schedule": crontab(minute=50),
        "options": {"queue": queues.DEFAULT, "expires": 90 * MINUTE},
    },
    "monitor-hourly": {
        "task": names.MONITOR,
        "schedule": crontab(minute=35),
        "options": {"queue": queues.DEFAULT, "expires": 90 * MINUTE},
    },
    # Trading cards (issue #7): the same loops for the `cards` collection; each task carries the
    # slug and skips while that collection is not loaded. Prices are collected once a day (the
    # collector asks for a nowcast when it stored something new); a nowcast at 07:00 anyway.
    "cards-prices-daily": {
        "task": names.CARD_PRICES,
        "schedule": crontab(minute=10, hour=6),
        "kwargs": {"collection": "cards"},
        "options": {"queue": queues.INGEST, "expires": 36 * HOUR},
    },
    "cards-nowcast-daily": {
        "task": names.NOWCAST,
        "schedule": crontab(minute=0, hour=7),
        "kwargs": {"collection": "cards"},
        "options": {"queue": queues.NOWCAST, "expires": 36 * HOUR},
    },
    "cards-retrain-policy-daily": {
        "task": names.POLICY,
        "schedule": crontab(minute=25, hour=2),
        "kwargs": {"collection": "cards"},
        "options": {"queue": queues.DEFAULT, "expires": 36 * HOUR},
    },
    "cards-archive-retry-hourly": {
        "task": names.ARCHIVE,
        "schedule": crontab(minute=55),
        "kwargs": {"collection": "cards"},
        "options": {"queue": queues.DEFAULT, "expires": 90 * MINUTE},
    },
    "cards-monitor-hourly": {
        "task": names.MONITOR,
        "schedule": crontab(minute=40),
        "kwargs": {"collection": "cards"},
        "options": {"queue": queues.DEFAULT, "expires": 90 * MINUTE},
    },
}

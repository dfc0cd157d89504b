"""Every periodic task, its cadence and expiry, in one place. Only one beat may run.

`expires` is about 1.5x the interval: after an outage, a backlog of stale runs is dropped
instead of replayed.
"""

from celery.schedules import crontab

from tasks import queues

MINUTE = 60
HOUR = 60 * MINUTE

SCHEDULE = {
    "nowcast-every-30-minutes": {
        "task": "fairvalue.nowcast",
        "schedule": crontab(minute="*/30"),
        "options": {"queue": queues.NOWCAST, "expires": 45 * MINUTE},
    },
    "retrain-policy-daily": {
        "task": "fairvalue.policy",
        "schedule": crontab(minute=15, hour=2),
        "options": {"queue": queues.DEFAULT, "expires": 36 * HOUR},
    },
    "training-sweep-hourly": {
        "task": "fairvalue.training.sweep",
        "schedule": crontab(minute=5),
        "options": {"queue": queues.DEFAULT, "expires": 90 * MINUTE},
    },
    "archive-retry-hourly": {
        "task": "fairvalue.archive",
        "schedule": crontab(minute=50),
        "options": {"queue": queues.DEFAULT, "expires": 90 * MINUTE},
    },
    "monitor-hourly": {
        "task": "fairvalue.monitor",
        "schedule": crontab(minute=35),
        "options": {"queue": queues.DEFAULT, "expires": 90 * MINUTE},
    },
}

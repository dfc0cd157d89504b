"""Every periodic task, its cadence and expiry, in one place. Only one beat may run.

`expires` is about 1.5x the interval: after an outage, a backlog of stale runs is dropped
instead of replayed.
"""

from celery.schedules import crontab

from tasks import queues

MINUTE = 60

SCHEDULE = {
    "nowcast-every-30-minutes": {
        "task": "fairvalue.nowcast",
        "schedule": crontab(minute="*/30"),
        "options": {"queue": queues.NOWCAST, "expires": 45 * MINUTE},
    },
}

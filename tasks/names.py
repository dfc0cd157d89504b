"""Every task's name, in one place: the tasks register under them, beat and the adapters send
them, the task runs are recorded under them, and the read side (fairvalue.outcomes, the CLI)
looks runs up by them. No Celery import, so reading them costs nothing."""

NOWCAST = "fairvalue.nowcast"
ARCHIVE = "fairvalue.archive"
POLICY = "fairvalue.policy"
MONITOR = "fairvalue.monitor"
TRAIN = "fairvalue.training.train"
SWEEP = "fairvalue.training.sweep"
AFTER_SALES = "fairvalue.ingest.after_sales"
AFTER_LISTINGS = "fairvalue.ingest.after_listings"
CARD_PRICES = "fairvalue.ingest.card_prices"

ALL = (NOWCAST, ARCHIVE, POLICY, MONITOR, TRAIN, SWEEP, AFTER_SALES, AFTER_LISTINGS, CARD_PRICES)

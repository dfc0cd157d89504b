"""The beat schedule (beat_schedule.py) names real tasks with arguments they take, on queues that
exist, and runs every per-collection loop for each collection it serves."""

import importlib
import inspect

import beat_schedule
from tasks import queues
from tasks.app import TASK_MODULES, app

SCHEDULE = beat_schedule.SCHEDULE
for module in TASK_MODULES:  # what a worker imports at start (the app's `include`)
    importlib.import_module(module)


def test_every_entry_names_a_registered_task_with_arguments_it_takes():
    for name, entry in SCHEDULE.items():
        assert entry["task"] in app.tasks, f"{name}: no task {entry['task']!r}"
        signature = inspect.signature(app.tasks[entry["task"]].run)
        signature.bind(*entry.get("args", ()), **entry.get("kwargs", {}))  # TypeError names what does not fit
        assert entry["options"]["queue"] in queues.ALL, name


def test_every_per_collection_loop_runs_for_the_cards_too():
    # A task that takes `collection` and runs for the default collection must run for the cards
    # as well, or that loop silently never runs there (the cards archive retry was once missing).
    per_collection = {entry["task"] for entry in SCHEDULE.values()
                      if "collection" in inspect.signature(app.tasks[entry["task"]].run).parameters
                      and "collection" not in entry.get("kwargs", {})}
    for_cards = {entry["task"] for entry in SCHEDULE.values() if entry.get("kwargs", {}).get("collection") == "cards"}
    assert per_collection, "no per-collection loop found: the test reads the schedule wrongly"
    assert per_collection <= for_cards, f"no cards entry for {sorted(per_collection - for_cards)}"


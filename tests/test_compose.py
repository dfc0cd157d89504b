"""docker-compose.yml (and the Dockerfile) checked against the code, statically.

No Docker, no network: the compose file is read with PyYAML, compose's `${VAR:-default}`
interpolation is applied with an empty environment (defaults win), and every command our image
runs is parsed by the real command-line parser it would meet: celery's click group (including
`-A`, which must load the Celery app) or the `fairvalue` typer app. A renamed queue, a removed
subcommand, a misspelt option, a port that drifts from the settings or a FAIRVALUE_* variable
that Settings does not know all fail here instead of at `docker compose up`.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml
from celery import Celery
from celery.app.utils import find_app
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from celery.utils.nodenames import host_format
from sqlalchemy.engine import make_url

import tasks.app
from fairvalue.cli import app as fairvalue_typer_app
from fairvalue.settings import PROJECT_ROOT, Settings
from tasks import queues

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

SHELLS = {"sh", "/bin/sh", "bash", "/bin/bash"}
DEPENDENCY_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
LONG_RUNNING_RESTART = {"always", "unless-stopped", "on-failure"}
POSTGRES_PORT, REDIS_PORT, MINIO_PORT = 5432, 6379, 9000


# --- reading compose ---------------------------------------------------------------------------

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<default>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str) -> str:
    """Compose interpolation with nothing set: `${X:-d}` is d, `$$` is `$`; a variable without a
    default becomes `<X>`, so two places that use the same variable still compare equal."""

    def sub(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        name, op = m.group("braced") or m.group("named"), m.group("op")
        if op in (":-", "-"):
            return m.group("default")
        if op in (":+", "+"):
            return ""
        return f"<{name}>"

    return _VAR.sub(sub, text)


def _interpolated(node):
    if isinstance(node, str):
        return interpolate(node)
    if isinstance(node, list):
        return [_interpolated(v) for v in node]
    if isinstance(node, dict):
        return {k: _interpolated(v) for k, v in node.items()}
    return node


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    return _interpolated(raw_compose)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    assert compose.get("services"), "docker-compose.yml has no services"
    return compose["services"]


def runs_our_image(svc: dict) -> bool:
    return "build" in svc


def our_services(services: dict) -> dict[str, dict]:
    ours = {name: svc for name, svc in services.items() if runs_our_image(svc)}
    assert ours, "no service builds the project image"
    return ours


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def argv(svc: dict) -> list[str]:
    """entrypoint + command, as compose hands them to the container."""
    parts: list[str] = []
    for key in ("entrypoint", "command"):
        value = svc.get(key)
        if isinstance(value, str):
            parts += shlex.split(value)
        elif value:
            parts += [str(v) for v in value]
    return parts


def simple_commands(args: list[str]) -> list[list[str]]:
    """The programs an argv runs: itself, or each command of an `sh -c` script."""
    if len(args) >= 3 and args[0] in SHELLS and args[1] == "-c":
        commands: list[list[str]] = []
        for line in args[2].splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            current: list[str] = []
            for token in lexer:
                if token in {"&&", "||", ";", "|", "&"}:
                    commands.append(current)
                    current = []
                else:
                    current.append(token)
            commands.append(current)
        return [c[1:] if c[0] == "exec" else c for c in commands if c and c[0] != "set" and c != ["exec"]]
    return [args] if args else []


def healthcheck(svc: dict) -> tuple[str, list[str]] | None:
    """(kind, argv) of a service's healthcheck: kind CMD (exec) or CMD-SHELL; None if it has none."""
    hc = svc.get("healthcheck")
    if not hc or hc.get("disable"):
        return None
    test = hc.get("test")
    if not test:
        return None
    if isinstance(test, str):
        return "CMD-SHELL", ["/bin/sh", "-c", test]
    kind, *rest = test
    if kind == "NONE":
        return None
    if kind == "CMD-SHELL":
        return kind, ["/bin/sh", "-c", " ".join(rest)]
    assert kind == "CMD", f"healthcheck test must start with CMD, CMD-SHELL or NONE, not {kind!r}"
    return kind, rest


def healthcheck_commands(svc: dict) -> list[list[str]]:
    hc = healthcheck(svc)
    return simple_commands(hc[1]) if hc else []


def dependencies(svc: dict) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def ports(svc: dict) -> list[tuple[int | None, int]]:
    """(published, target) per port mapping, short or long syntax."""
    out: list[tuple[int | None, int]] = []
    for spec in svc.get("ports") or []:
        if isinstance(spec, dict):
            published = spec.get("published")
            out.append((int(published) if published else None, int(spec["target"])))
            continue
        parts = str(spec).split("/")[0].split(":")
        if len(parts) == 1:
            out.append((None, int(parts[0])))
        else:
            out.append((int(parts[-2]) if parts[-2] else None, int(parts[-1])))
    return out


def long_option(args: list[str], *names: str) -> str | None:
    """Value of `--name value` / `--name=value` / `-n value` in an argv (last one wins)."""
    found = None
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(name + "=") and name.startswith("--"):
                found = arg.split("=", 1)[1]
    return found


def python_code(cmd: list[str]) -> str | None:
    if len(cmd) >= 3 and Path(cmd[0]).name.startswith("python") and cmd[1] == "-c":
        return cmd[2]
    return None


def probe_url(svc: dict) -> str:
    """The URL a `python -c "...urlopen(URL)..."` healthcheck asks."""
    for cmd in healthcheck_commands(svc):
        code = python_code(cmd)
        if code and (m := re.search(r"https?://[^'\"\s]+", code)):
            return m.group(0)
    raise AssertionError("healthcheck is not a python urllib probe of an http:// URL")


# --- parsing our commands with the real CLIs --------------------------------------------------


# celery uses click; typer >= 0.29 vendors its own copy (typer._click), so the walk below is
# duck-typed instead of isinstance(click.Group).


def _is_group(cmd) -> bool:
    return hasattr(cmd, "resolve_command") and hasattr(cmd, "commands")


def _pending(ctx) -> list[str]:
    """The arguments a group left for its subcommand (`protected_args` before click 8.2)."""
    protected = getattr(ctx, "_protected_args", None)
    if protected is None:
        protected = ctx.protected_args
    return [*protected, *ctx.args]


class Invocation:
    """A command line resolved through a click group: the subcommand path and its parsed params."""

    def __init__(self, program: str, path: list[str], ctx, args: list[str]):
        self.program, self.path, self.ctx, self.args = program, path, ctx, args

    @property
    def params(self) -> dict:
        return self.ctx.params

    @property
    def root_params(self) -> dict:
        return self.ctx.find_root().params

    def __repr__(self) -> str:
        return f"<{self.program} {' '.join(self.path)}>"


def _resolve(program: str, group, args: list[str], make_obj=None) -> Invocation:
    ctx = group.make_context(program, list(args))
    if make_obj is not None:
        ctx.obj = make_obj(ctx)
    cmd = group
    path: list[str] = []
    while _is_group(cmd):
        name, sub, rest = cmd.resolve_command(ctx, _pending(ctx))
        path.append(name)
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return Invocation(program, path, ctx, list(args))


def _celery_obj(ctx) -> CLIContext:
    app_name = ctx.params.get("app")
    assert app_name, "celery needs -A <module>"
    app = find_app(app_name)
    assert isinstance(app, Celery), f"-A {app_name} is {type(app).__name__}, not a Celery app"
    return CLIContext(app=app, no_color=True, workdir=None, quiet=True)


def parse(cmd: list[str]) -> Invocation:
    """Parse one of our programs' command lines; anything else is an error."""
    program, *args = cmd
    name = Path(program).name
    if name == "celery":
        return _resolve("celery", celery_cli, args, _celery_obj)
    if name == "fairvalue":
        return _resolve("fairvalue", typer.main.get_command(fairvalue_typer_app), args)
    if name.startswith("python") and args[:2] == ["-m", "celery"]:
        return parse(["celery", *args[2:]])
    if name.startswith("python") and args[:2] == ["-m", "fairvalue.cli"]:
        return parse(["fairvalue", *args[2:]])
    raise AssertionError(f"{program!r} is not one of our programs (celery, fairvalue)")


def main_invocations(svc: dict) -> list[Invocation]:
    return [parse(cmd) for cmd in simple_commands(argv(svc))]


def main_invocation(svc: dict) -> Invocation:
    invocations = main_invocations(svc)
    assert len(invocations) == 1, f"expected one command, got {invocations}"
    return invocations[0]


def is_celery(inv: Invocation, sub: str) -> bool:
    return inv.program == "celery" and inv.path == [sub]


def is_worker(inv: Invocation) -> bool:
    return is_celery(inv, "worker") or (inv.program == "fairvalue" and inv.path == ["worker"])


def is_beat(inv: Invocation) -> bool:
    return is_celery(inv, "beat") or (inv.program == "fairvalue" and inv.path == ["beat"])


def worker_queues(inv: Invocation) -> list[str]:
    if inv.program == "fairvalue":
        return queues.parse_queue_list(inv.params["queue"])
    # no -Q: the worker consumes the app's default queue
    return list(inv.params["queues"] or [tasks.app.app.conf.task_default_queue])


def node_name(inv: Invocation, svc: dict) -> str:
    """The worker's node name template: celery's -n (default celery@%h), or `fairvalue worker`'s
    --name (default from its queues)."""
    if inv.program == "fairvalue":
        return inv.params["name"] or queues.worker_node_name(worker_queues(inv))
    return long_option(argv(svc), "-n", "--hostname") or "celery@%h"


def workers(services: dict) -> dict[str, Invocation]:
    found = {}
    for name, svc in our_services(services).items():
        invocations = [inv for inv in main_invocations(svc) if is_worker(inv)]
        if invocations:
            found[name] = invocations[0]
    return found


# --- every service ---------------------------------------------------------------------------


def test_compose_file_parses_with_services(services):
    for name in ("postgres", "redis", "minio", "minio-init", "migrate", "api", "worker", "training-worker",
                 "training-worker-gpu", "beat", "flower"):
        assert name in services, f"service {name} is missing"


def test_every_service_has_a_healthcheck_or_is_a_one_shot(services):
    for name, svc in services.items():
        if healthcheck(svc) is None:
            assert svc.get("restart") == "no", f"{name}: no healthcheck, so it must be a one-shot (restart: \"no\")"
        else:
            assert svc.get("restart") in LONG_RUNNING_RESTART, f"{name}: a long-running service should restart"


def test_one_shots_are_awaited_until_they_complete(services):
    one_shots = {name for name, svc in services.items() if svc.get("restart") == "no"}
    assert {"migrate", "minio-init"} <= one_shots
    for name in one_shots:
        awaited_by = [other for other, svc in services.items()
                      if dependencies(svc).get(name) == "service_completed_successfully"]
        assert awaited_by, f"one-shot {name} is not depended on with condition service_completed_successfully"


def test_dependencies_exist_and_their_conditions_can_be_met(services):
    for name, svc in services.items():
        for dep, condition in dependencies(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert condition in DEPENDENCY_CONDITIONS, f"{name} -> {dep}: unknown condition {condition}"
            if condition == "service_healthy":
                assert healthcheck(services[dep]), f"{name} waits for {dep} to be healthy; it has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{name} waits for {dep} to exit; it is not a one-shot"
            if healthcheck(services[dep]):
                assert condition == "service_healthy", f"{name} should wait for {dep} to be healthy"


def test_dependencies_have_no_cycle(services):
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        assert state.get(name) != "open", f"dependency cycle: {' -> '.join([*trail, name])}"
        if state.get(name) == "done":
            return
        state[name] = "open"
        for dep in dependencies(services[name]):
            visit(dep, [*trail, name])
        state[name] = "done"

    for name in services:
        visit(name, [])


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            source = vol.get("source") if isinstance(vol, dict) else str(vol).split(":")[0]
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_python_healthchecks_compile(services):
    compiled = set()
    for name, svc in services.items():
        for cmd in healthcheck_commands(svc):
            if (code := python_code(cmd)) is not None:
                compile(code, f"<{name} healthcheck>", "exec")
                compiled.add(name)
    # The API's, beat's and Flower's probes are python -c: a parse that found none would pass here
    # having checked nothing.
    assert {"api", "beat", "flower"} <= compiled, f"python healthchecks found only in {sorted(compiled)}"


def test_shell_variables_in_healthchecks_need_a_shell(services):
    for name, svc in services.items():
        hc = healthcheck(svc)
        if hc and hc[0] == "CMD" and any("$" in arg for arg in hc[1]):
            pytest.fail(f"{name}: an exec-form (CMD) healthcheck does not expand $VARIABLES; use CMD-SHELL")


# --- our code ----------------------------------------------------------------------------------


def test_our_commands_parse_against_the_real_clis(services):
    """Every command our image runs resolves through celery's or fairvalue's own parser, so an
    unknown subcommand, queue option or flag fails here; `-A` must load a Celery app."""
    for name, svc in our_services(services).items():
        invocations = main_invocations(svc)
        assert invocations, f"{name} has no command (the image's default would run)"
        for cmd in healthcheck_commands(svc):
            if Path(cmd[0]).name in {"celery", "fairvalue"}:
                parse(cmd)


def test_celery_app_is_tasks_app(services):
    seen = 0
    for svc in our_services(services).values():
        for inv in main_invocations(svc):
            if inv.program == "celery":
                seen += 1
                assert find_app(inv.root_params["app"]) is tasks.app.app
                assert isinstance(tasks.app.app, Celery)
    assert seen, "no service runs celery"


def test_fairvalue_commands_are_real_subcommands(services):
    group = typer.main.get_command(fairvalue_typer_app)
    seen = 0
    for name, svc in our_services(services).items():
        for inv in main_invocations(svc):
            if inv.program != "fairvalue":
                continue
            seen += 1
            cmd = group
            for part in inv.path:
                assert _is_group(cmd) and part in cmd.commands, f"{name}: no `fairvalue {' '.join(inv.path)}`"
                cmd = cmd.commands[part]
            assert not _is_group(cmd), f"{name}: `fairvalue {' '.join(inv.path)}` is a group, not a command"
    assert seen, "no service runs the fairvalue CLI"


def test_migrate_prepares_everything_once(services):
    """`fairvalue up --once` migrates, seeds, trains a first champion and publishes a nowcast;
    it needs the database and the artifact bucket."""
    invocations = main_invocations(services["migrate"])
    assert [" ".join(inv.path) for inv in invocations] == ["up"]
    assert "--once" in services["migrate"]["command"]
    needs = services["migrate"]["depends_on"]
    assert needs["postgres"]["condition"] == "service_healthy"
    assert needs["minio-init"]["condition"] == "service_completed_successfully"


def test_all_services_running_our_code_share_one_configuration(services):
    ours = our_services(services)
    contexts = {name: str(svc["build"] if isinstance(svc["build"], str) else svc["build"].get("context", "."))
                for name, svc in ours.items()}
    assert len(set(contexts.values())) == 1, contexts
    assert (ROOT / next(iter(contexts.values())) / "Dockerfile").is_file()
    envs = {name: {k: v for k, v in environment(svc).items() if k.startswith("FAIRVALUE_")}
            for name, svc in ours.items()}
    first = next(iter(envs.values()))
    for name, env in envs.items():
        assert env == first, f"{name} has a different FAIRVALUE_* configuration"
        for key in ("FAIRVALUE_DATABASE_URL", "FAIRVALUE_BROKER_URL", "FAIRVALUE_ARTIFACTS_URL"):
            # empty means the embedded default: SQLite / a broker folder private to each container
            assert env.get(key), f"{name}: {key} is not set"


def _fairvalue_names_in(node) -> Iterator[str]:
    if isinstance(node, str):
        yield from re.findall(r"\bFAIRVALUE_[A-Z0-9_]+", node)
    elif isinstance(node, list):
        for v in node:
            yield from _fairvalue_names_in(v)
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _fairvalue_names_in(k)
            yield from _fairvalue_names_in(v)


def _dockerfile_lines() -> list[str]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_fairvalue_variables_are_settings_fields(raw_compose):
    """Settings ignores unknown FAIRVALUE_* variables (extra="ignore"), so a misspelt one would
    silently do nothing: each one used in compose or the Dockerfile must name a Settings field."""
    prefix = Settings.model_config["env_prefix"]
    fields = set(Settings.model_fields)
    names = set(_fairvalue_names_in(raw_compose))
    names |= set(re.findall(r"\bFAIRVALUE_[A-Z0-9_]+", "\n".join(_dockerfile_lines())))
    assert names, "no FAIRVALUE_* variable found"
    unknown = sorted(n for n in names if n.removeprefix(prefix).lower() not in fields)
    assert not unknown, f"not fields of fairvalue.settings.Settings: {unknown}"


# --- queues and workers ------------------------------------------------------------------------


def test_worker_queues_are_known(services):
    found = workers(services)
    assert found, "no worker service"
    for name, inv in found.items():
        queue_names = worker_queues(inv)
        unknown = set(queue_names) - set(queues.ALL)
        assert not unknown, f"{name} consumes unknown queue(s) {sorted(unknown)}; known: {queues.ALL}"
        assert len(queue_names) == len(set(queue_names)), f"{name} lists a queue twice"


def test_general_worker_consumes_the_general_queues(services):
    inv = workers(services)["worker"]
    assert sorted(worker_queues(inv)) == sorted(queues.GENERAL_WORKER_QUEUES)


@pytest.mark.parametrize("name", ["training-worker", "training-worker-gpu"])
def test_training_workers_consume_only_training_one_at_a_time(services, name):
    inv = workers(services)[name]
    assert tuple(worker_queues(inv)) == (queues.TRAINING,)
    assert inv.params["concurrency"] == 1
    if inv.program == "celery":
        assert inv.params["prefetch_multiplier"] == 1
        assert "--prefetch-multiplier" in " ".join(inv.args), "set --prefetch-multiplier 1 explicitly"


def test_gpu_training_worker_reserves_a_gpu_under_a_profile(services):
    svc = services["training-worker-gpu"]
    assert "gpu" in (svc.get("profiles") or [])
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def test_every_queue_has_a_consumer(services):
    """A queue in tasks/queues.py, a route or the beat schedule that no always-on worker
    consumes would fill up forever."""
    consumed = {q for name, inv in workers(services).items() if not services[name].get("profiles")
                for q in worker_queues(inv)}
    conf = tasks.app.app.conf
    wanted = set(queues.ALL) | {conf.task_default_queue}
    wanted |= {route["queue"] for route in (conf.task_routes or {}).values() if "queue" in route}
    wanted |= {entry.get("options", {}).get("queue") for entry in (conf.beat_schedule or {}).values()} - {None}
    assert wanted <= consumed, f"no worker consumes {sorted(wanted - consumed)}"


def test_workers_are_named_from_their_queues(services):
    """Compose's workers carry the node name `fairvalue worker` would give them (general@%h,
    training@%h), as README says and /v1/queue and Flower show: plain `celery worker` would be
    celery@<container id> for every one of them."""
    found = workers(services)
    assert {"worker", "training-worker"} <= set(found)
    for name, inv in found.items():
        template = node_name(inv, services[name])
        assert template == queues.worker_node_name(worker_queues(inv)), \
            f"{name}: -n {template}, not {queues.worker_node_name(worker_queues(inv))}"
        assert template.partition("@")[2] == "%h", f"{name}: the host part of -n should be %h, not {template}"
        if inv.program == "celery":
            # the parser took it as the node name (it expands %h itself)
            assert inv.params["hostname"] == host_format(template), f"{name}: -n is not the worker's node name"


def test_worker_healthchecks_ping_their_own_node(services):
    assert {"worker", "training-worker"} <= set(workers(services))  # none found would check nothing
    for name in workers(services):
        svc = services[name]
        hc = healthcheck(svc)
        assert hc, f"{name} has no healthcheck"
        pings = [parse(cmd) for cmd in healthcheck_commands(svc) if Path(cmd[0]).name == "celery"]
        assert pings and is_celery(pings[0], "inspect") and pings[0].params["command"] == "ping", \
            f"{name}: healthcheck should be `celery -A ... inspect ping -d <node>`"
        ping = pings[0]
        assert find_app(ping.root_params["app"]) is tasks.app.app
        node_template = node_name(workers(services)[name], svc)
        expected = node_template.replace("%h", "$HOSTNAME")
        assert ping.params["destination"] == [expected], f"{name}: ping {ping.params['destination']}, not {expected}"
        assert hc[0] == "CMD-SHELL", f"{name}: $HOSTNAME needs a CMD-SHELL healthcheck"


# --- beat ---------------------------------------------------------------------------------------


def test_exactly_one_beat(services):
    beats = [name for name, svc in our_services(services).items()
             if any(is_beat(inv) for inv in main_invocations(svc))]
    assert beats == ["beat"], f"exactly one beat service, found {beats}"
    svc = services["beat"]
    assert int((svc.get("deploy") or {}).get("replicas", 1)) <= 1
    assert int(svc.get("scale", 1)) <= 1
    for name, inv in workers(services).items():
        assert not inv.params.get("beat"), f"{name} embeds a beat (-B): that would be a second one"


def test_beat_schedule_is_on_a_volume_and_watched_by_the_healthcheck(services):
    svc = services["beat"]
    inv = main_invocation(svc)
    assert is_celery(inv, "beat"), "beat should run `celery -A ... beat -s <file on a volume>`"
    schedule = inv.params["schedule"]
    assert long_option(inv.args, "-s", "--schedule") == schedule, "pass -s explicitly"
    assert schedule.startswith("/"), schedule
    targets = []
    for vol in svc.get("volumes") or []:
        targets.append(vol["target"] if isinstance(vol, dict) else str(vol).split(":")[1])
    assert any(schedule.startswith(t.rstrip("/") + "/") for t in targets), \
        f"{schedule} is not on a volume: beat would forget last-run times on every restart"
    code = " ".join(python_code(cmd) or "" for cmd in healthcheck_commands(svc))
    assert schedule in code, "the beat healthcheck should watch the schedule file"


# --- ports, URLs, infrastructure --------------------------------------------------------------


def test_api_port_matches_command_and_settings(services):
    svc = services["api"]
    inv = main_invocation(svc)
    assert inv.program == "fairvalue" and inv.path == ["api"]
    port = inv.params["port"]
    assert port == Settings.model_fields["api_port"].default
    assert inv.params["host"] == "0.0.0.0", "bind all interfaces, or the published port reaches nothing"
    assert {target for _, target in ports(svc)} == {port}


def test_api_healthcheck_asks_a_real_route_on_the_api_port(services):
    from api.app import app as api_app

    url = urlsplit(probe_url(services["api"]))
    assert url.port == main_invocation(services["api"]).params["port"]
    get_routes = {route.path for route in api_app.routes if "GET" in (getattr(route, "methods", None) or ())}
    assert url.path in get_routes
    assert url.path == "/healthz", "liveness, not readiness: /readyz would restart the API when a dependency is down"


def _flower_options(inv: Invocation) -> dict[str, str]:
    import flower.options  # noqa: F401  (defines flower's tornado options)
    from tornado.options import options

    parsed = {}
    for arg in inv.params["tornado_argv"]:
        assert arg.startswith("--") and "=" in arg, f"flower takes --name=value options, not {arg!r}"
        name, value = arg[2:].split("=", 1)
        assert name in options, f"flower has no option --{name}"
        parsed[name.replace("_", "-")] = value
    return parsed


def test_flower_port_auth_and_healthcheck(services):
    from flower.urls import handlers

    svc = services["flower"]
    inv = main_invocation(svc)
    assert is_celery(inv, "flower")
    opts = _flower_options(inv)
    port = int(opts["port"])
    assert {target for _, target in ports(svc)} == {port}
    user, _, password = opts.get("basic-auth", "").partition(":")
    assert user and password, "flower is published: it needs --basic-auth"
    url = urlsplit(probe_url(svc))
    assert url.port == port
    patterns = [h[0] if isinstance(h, tuple) else h.regex.pattern for h in handlers]
    assert any(re.fullmatch(p.removesuffix("$"), url.path) for p in patterns if p != ".*"), url.path


def test_data_services_publish_no_host_port(services):
    """Our services reach postgres, redis and minio over the compose network; publishing their
    ports made `docker compose up` fail on a host already running PostgreSQL or Redis. An operator
    who wants them from the host adds `ports:` in a docker-compose.override.yml (README)."""
    data_services = {name: svc for name, svc in services.items() if not runs_our_image(svc)}
    assert {"postgres", "redis", "minio"} <= set(data_services)
    for name, svc in data_services.items():
        assert not svc.get("ports"), f"{name} publishes {svc['ports']} on the host"
        assert svc.get("network_mode") != "host", f"{name} on the host network takes the host's ports"


def test_redis_keeps_queued_messages(services):
    args = argv(services["redis"])
    assert args and args[0] == "redis-server"
    assert long_option(args, "--appendonly") == "yes", "without AOF a restart loses queued tasks"
    assert long_option(args, "--maxmemory-policy") == "noeviction", "eviction would drop queued tasks"
    assert healthcheck_commands(services["redis"]) == [["redis-cli", "ping"]]


def test_postgres_healthcheck_is_pg_isready(services):
    assert any(cmd[0] == "pg_isready" for cmd in healthcheck_commands(services["postgres"]))


def _app_env(services) -> dict[str, str]:
    return environment(our_services(services)["api"])


def test_database_url_points_at_the_postgres_service(services):
    url = make_url(_app_env(services)["FAIRVALUE_DATABASE_URL"])
    url.get_dialect()  # the driver is installed
    assert (url.get_backend_name(), url.get_driver_name()) == ("postgresql", "psycopg")
    assert url.host == "postgres" and url.port == POSTGRES_PORT
    pg = environment(services["postgres"])
    assert url.username == pg["POSTGRES_USER"]
    assert url.password == pg["POSTGRES_PASSWORD"]
    assert url.database == pg.get("POSTGRES_DB", pg["POSTGRES_USER"])


def test_broker_url_points_at_the_redis_service(services):
    url = urlsplit(_app_env(services)["FAIRVALUE_BROKER_URL"])
    assert url.scheme == "redis"
    assert url.hostname == "redis" and url.port == REDIS_PORT


def test_artifacts_go_to_the_bucket_minio_init_creates(services):
    env = _app_env(services)
    artifacts = urlsplit(env["FAIRVALUE_ARTIFACTS_URL"])
    assert artifacts.scheme == "s3"
    endpoint = urlsplit(env["FAIRVALUE_S3_ENDPOINT_URL"])
    assert endpoint.hostname == "minio" and endpoint.port == MINIO_PORT

    minio = environment(services["minio"])
    assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]

    init = services["minio-init"]
    commands = simple_commands(argv(init))
    aliases = {c[3]: c[4] for c in commands if c[:3] == ["mc", "alias", "set"]}
    assert aliases, "minio-init should `mc alias set <alias> <endpoint> <user> <password>`"
    for alias_url in aliases.values():
        u = urlsplit(alias_url)
        assert u.hostname == "minio" and u.port == MINIO_PORT
    made = [c for c in commands if c[:2] == ["mc", "mb"]]
    assert made, "minio-init should `mc mb` the bucket"
    targets = {arg for c in made for arg in c[2:] if not arg.startswith("-")}
    assert f"{next(iter(aliases))}/{artifacts.netloc}" in targets, f"bucket {artifacts.netloc} is not created"
    assert all("--ignore-existing" in c or "-p" in c for c in made), "a second run must not fail"
    init_env = environment(init)
    assert (init_env.get("MINIO_ROOT_USER"), init_env.get("MINIO_ROOT_PASSWORD")) == (
        minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])


# --- Dockerfile ---------------------------------------------------------------------------------


def _build_args(build) -> dict[str, str | None]:
    args = (build.get("args") or {}) if isinstance(build, dict) else {}
    if isinstance(args, list):
        args = dict(item.split("=", 1) if "=" in item else (item, None) for item in args)
    return {k: None if v is None else str(v) for k, v in args.items()}


def _final_stage() -> list[str]:
    lines = _dockerfile_lines()
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    assert starts, "the Dockerfile has no FROM"
    return lines[starts[-1] + 1:]


def test_build_passes_the_code_version(raw_compose):
    """The image has no git, so without the build arg every model version trained under compose
    records "unknown": each build passes CODE_VERSION from FAIRVALUE_CODE_VERSION, and the
    runtime stage turns it into FAIRVALUE_CODE_VERSION (Settings.code_version)."""
    assert "code_version" in Settings.model_fields
    ours = our_services(raw_compose["services"])
    for name, svc in ours.items():
        value = _build_args(svc["build"]).get("CODE_VERSION")
        assert value is not None, f"{name}: build passes no CODE_VERSION arg"
        assert re.fullmatch(r"\$\{FAIRVALUE_CODE_VERSION(:?-[^}]*)?\}", value), \
            f"{name}: CODE_VERSION should come from ${{FAIRVALUE_CODE_VERSION}}, not {value!r}"

    stage = _final_stage()
    arg_lines = [i for i, line in enumerate(stage)
                 if re.fullmatch(r"ARG\s+CODE_VERSION(=.*)?", line, flags=re.IGNORECASE)]
    assert arg_lines, "the runtime stage does not declare ARG CODE_VERSION (a build arg it does not declare is dropped)"
    env = " ".join(line for line in stage[arg_lines[0]:] if line.upper().startswith("ENV "))
    assert re.search(r"\bFAIRVALUE_CODE_VERSION=\$\{?CODE_VERSION\}?(\s|$)", env), \
        "the runtime stage should set ENV FAIRVALUE_CODE_VERSION=${CODE_VERSION} after the ARG"
    # A changed build arg misses the cache from its first use on: a RUN after it would run again
    # on every commit (the dependencies reinstalled).
    after = [line for line in stage[arg_lines[0]:] if line.upper().startswith("RUN ")]
    assert not after, f"RUN after ARG CODE_VERSION reruns on every commit: {after}"
    declared = {re.split(r"[\s=]", line, maxsplit=2)[1] for line in stage if line.upper().startswith("ARG ")}
    for name, svc in ours.items():
        unknown = set(_build_args(svc["build"])) - declared
        assert not unknown, f"{name}: build args {sorted(unknown)} are not declared in the runtime stage"


def test_dockerfile_runs_as_a_user_and_copies_the_whole_package():
    lines = _dockerfile_lines()
    users = [line.split(None, 1)[1] for line in lines if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the image should not run as root"

    copied: set[str] = set()
    for line in lines:
        if not line.upper().startswith("COPY ") or "--from" in line:
            continue
        *sources, _dest = [p for p in line.split()[1:] if not p.startswith("--")]
        for src in sources:
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
            copied.add(Path(src).parts[0])
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    needed = {p.split(".")[0] for p in setuptools.get("packages", [])}
    needed |= {f"{m}.py" for m in setuptools.get("py-modules", [])}
    # Files read at runtime from the source tree by default: copied, and pointed at by ENV, since
    # the installed package's "project root" is site-packages.
    env = "\n".join(line for line in lines if line.upper().startswith("ENV "))
    for field in ("data_dir", "cards_config"):
        default = Settings.model_fields[field].default
        needed.add(default.relative_to(PROJECT_ROOT).parts[0])
        assert f"FAIRVALUE_{field.upper()}=/app/{default.relative_to(PROJECT_ROOT)}" in env, field
    assert needed <= copied, f"the image misses {sorted(needed - copied)}"

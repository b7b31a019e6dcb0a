"""deploy/: the files parse, carry the fields an operator needs, keep token authentication on,
and the commands they run are valid raygrpo commands."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from orchestrator.__main__ import parser
from orchestrator.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RUNTIME_ENV_FIELDS = {
    "working_dir",
    "py_modules",
    "excludes",
    "env_vars",
    "pip",
    "uv",
    "conda",
    "container",
    "image_uri",
    "config",
    "nsight",
    "py_executable",
}


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def check_train_command(argv: list[str]) -> None:
    """`raygrpo train ...` as the file writes it: parses, and its config + overrides validate."""
    assert argv[:2] == ["raygrpo", "train"], argv
    args = parser().parse_args(argv[1:])
    assert (ROOT / args.config).is_file(), args.config
    load_config(ROOT / args.config, args.overrides)


def test_cluster_launcher_yaml():
    c = load("cluster.yaml")
    assert c["cluster_name"] and c["provider"]["type"] and c["max_workers"] >= 1
    types = c["available_node_types"]
    assert c["head_node_type"] in types
    gpu = [
        t for name, t in types.items() if name != c["head_node_type"] and t["resources"].get("GPU", 0) >= 1
    ]
    assert gpu and all(t["max_workers"] >= t["min_workers"] for t in gpu)
    assert all(t["node_config"]["InstanceType"] and t["node_config"]["ImageId"] for t in types.values())
    # token auth: the token goes to every node, every `ray start` runs with RAY_AUTH_MODE=token
    assert c["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    starts = [
        cmd for cmd in c["head_start_ray_commands"] + c["worker_start_ray_commands"] if "ray start" in cmd
    ]
    assert len(starts) == 2 and all(cmd.startswith("RAY_AUTH_MODE=token ray start") for cmd in starts)
    assert "--dashboard-host=127.0.0.1" in c["head_start_ray_commands"][-1]
    assert any("pip install -e ~/raygrpo" in cmd for cmd in c["setup_commands"])


def test_cluster_launcher_header_commands_are_valid():
    header = [
        line.lstrip("# ").strip()
        for line in (DEPLOY / "cluster.yaml").read_text().splitlines()
        if line.startswith("#")
    ]
    text = " ".join(header).replace("\\ ", "")
    train = re.search(r"-- (raygrpo train .*?)(?= ray exec| #|$)", text).group(1)
    check_train_command(shlex.split(train))
    assert "raygrpo scale --workers" in text and "--runtime-env deploy/runtime_env.yaml" in text


def test_kuberay_rayjob_manifest():
    job = load("kuberay/rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    spec = job["spec"]
    check_train_command(shlex.split(spec["entrypoint"]))
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert set(env) <= RUNTIME_ENV_FIELDS and all(isinstance(v, str) for v in env["env_vars"].values())
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    assert tuple(int(x) for x in cluster["rayVersion"].split(".")[:2]) >= (2, 52)  # token auth exists
    head = cluster["headGroupSpec"]["template"]["spec"]
    workers = cluster["workerGroupSpecs"]
    assert head["containers"][0]["image"]
    assert workers and all(w["maxReplicas"] >= w["minReplicas"] >= 0 for w in workers)
    gpu = workers[0]["template"]["spec"]["containers"][0]
    assert (
        int(gpu["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        and gpu["image"] == head["containers"][0]["image"]
    )
    # the run dir is on a volume every pod mounts (checkpoints are written by the learner ranks)
    run_dir = shlex.split(spec["entrypoint"])[shlex.split(spec["entrypoint"]).index("--run-dir") + 1]
    for pod in [head] + [w["template"]["spec"] for w in workers]:
        mounts = [m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])]
        assert any(run_dir.startswith(m) for m in mounts)


def test_runtime_env_yaml():
    from ray.runtime_env import RuntimeEnv

    env = load("runtime_env.yaml")
    assert set(env) <= RUNTIME_ENV_FIELDS
    assert env["working_dir"] == "." and "runs/" in env["excludes"]
    RuntimeEnv(**env)  # Ray's own validation (types of env_vars, excludes, ...)


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file())
)
def test_no_deploy_file_turns_authentication_off(path):
    text = (DEPLOY / path).read_text()
    assert not re.search(r"RAY_AUTH_MODE\W+disabled", text), path


def test_readme_shows_submit_scale_stop_and_where_auth_is_off():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Running on a Ray cluster") :]
    for needle in (
        "ray job submit",
        "raygrpo scale --workers",
        "ray job stop",
        "--resume",
        "RAY_AUTH_MODE=token",
        "deploy/kuberay/rayjob.yaml",
        "deploy/cluster.yaml",
        "deploy/runtime_env.yaml",
    ):
        assert needle in section, needle
    assert "RAY_AUTH_MODE=disabled" in section and "127.0.0.1" in section

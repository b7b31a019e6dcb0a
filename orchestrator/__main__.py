"""The `raygrpo` command line.

    raygrpo train --config deploy/configs/tiny.yaml [--run-dir DIR]
                  [--resume [--allow-config-changes]] [key.sub=value ...]
    raygrpo eval  --checkpoint RUN_DIR|CHECKPOINT|base --prompts FILE [--seed N] [--json OUT]
    raygrpo embed --config FILE --prompts FILE [--out DIR] [key.sub=value ...]
    raygrpo dashboard --run-dir DIR [--host 127.0.0.1] [--port 8266]
    raygrpo scale --workers N [--run RUN_DIR] [--address ADDR] [--wait]

Errors worded for the user (orchestrator/errors.py) print as one `raygrpo: ...` message: a
UserError / ConfigError (exit 2: nothing started), a RunStopped (exit 1: the run stopped; the
message names the last checkpoint, RUN_DIR/error.log holds the traceback). Anything else is a
bug and raises with its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from orchestrator.config import load_config, unused_settings
from orchestrator.errors import ConfigError, RunStopped, UserError


def connect_ray(address: str | None) -> bool:
    """Join the cluster named by --address / RAY_ADDRESS (a `ray job submit` driver gets it set,
    and its runtime_env is kept as is); otherwise start a private local Ray on loopback.
    True when this call connected (so the caller disconnects); False when Ray already was."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=True)
    else:  # a private Ray on loopback: nothing outside this machine can reach it
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(
            _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=True, num_cpus=os.cpu_count()
        )
    return True


def cmd_train(args) -> int:
    from orchestrator.inputs import preflight
    from orchestrator.rundir import default_run_dir, prepare

    cfg = load_config(args.config, args.overrides)  # config errors surface here, before Ray
    for line in unused_settings(cfg):
        print(f"raygrpo: warning: {line}", file=sys.stderr)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg.algorithm)
    preflight(cfg)  # the embedding cache, hub ids
    prepare(cfg, run_dir, args.resume, args.allow_config_changes)  # a used run dir, resume changes
    from orchestrator.loop import train

    if args.no_ray:
        from orchestrator.local import LocalCluster

        result = train(
            cfg,
            run_dir,
            resume=args.resume,
            cluster_cls=LocalCluster,
            allow_config_changes=args.allow_config_changes,
        )
    else:
        connected = connect_ray(args.address)
        try:
            result = train(cfg, run_dir, resume=args.resume, allow_config_changes=args.allow_config_changes)
        finally:
            if connected:  # a Ray the caller started (a notebook, a test) stays up
                disconnect_ray()  # actor log lines still in flight must not print after the summary
    print(summary(result), flush=True)
    return 0


def disconnect_ray() -> None:
    import ray

    sys.stdout.flush()
    ray.shutdown()


def cmd_scale(args) -> int:
    """Set the number of rollout workers of a running job (orchestrator/control.py)."""
    import ray

    from orchestrator.control import CONTROL_NAMESPACE, request_scale

    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: a run needs at least 1 rollout worker")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        address = args.address or os.environ.get("RAY_ADDRESS") or "auto"
        try:
            ray.init(
                address=address, namespace=CONTROL_NAMESPACE, log_to_driver=False, logging_level="warning"
            )
        except ConnectionError as err:
            raise UserError(
                f"raygrpo scale: no Ray cluster at {address} ({err}); give --address of the job's "
                "cluster, or run it on a node of that cluster"
            ) from None
    print(request_scale(args.workers, args.run, wait_s=args.timeout if args.wait else 0))
    return 0


def summary(result: dict) -> str:
    run_dir = result["run_dir"]
    lines = [f"run dir: {run_dir}"]
    before, after = result.get("before"), result.get("after")
    if before and after:
        lines.insert(0, "held-out rewards (ODE, before -> after):")
        for name in before:
            if name != "seconds":
                lines.insert(-1, f"  {name:<12} {before[name]:.3f} -> {after[name]:.3f}")
        lines.append(f"grids: {run_dir}/samples/eval_before.png, {run_dir}/samples/eval_after.png")
    return "\n".join(lines)


def cmd_eval(args) -> int:
    import torch

    from orchestrator.checkpoint import load_policy_weights
    from orchestrator.evaluate import eval_images, score_images
    from orchestrator.inputs import preflight, prompt_arg
    from orchestrator.rundir import resolve_checkpoint
    from reward.worker import build_scorer
    from rollout.config import schedule_shift
    from rollout.policy import policy_from_config

    ckpt = (
        None if args.checkpoint == "base" else resolve_checkpoint(args.checkpoint)
    )  # a run dir, checkpoints/latest, or iter_*
    config = args.config or (ckpt / "config.yaml" if ckpt and (ckpt / "config.yaml").exists() else None)
    cfg = load_config(config, args.overrides)
    preflight(cfg)
    prompts = prompt_arg("--prompts", args.prompts, cfg.reward.scorers)
    torch.set_num_threads(args.threads)
    policy = policy_from_config(cfg.model)
    if ckpt is not None:
        policy.load_trainable_state(load_policy_weights(ckpt))
    batch, images = eval_images(
        policy,
        prompts,
        seed=args.seed,
        samples_per_prompt=args.samples_per_prompt,
        num_steps=cfg.rollout.num_steps,
        shift=schedule_shift(cfg.model, cfg.rollout),
    )
    scorers = [*cfg.reward.scorers, *cfg.reward.heldout]  # the held-out judges too, as in before / after
    means = score_images({s.name: build_scorer(s) for s in scorers}, batch, images)
    for name, value in means.items():
        print(f"{name}: {value:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(means, indent=2) + "\n")
    return 0


def cmd_embed(args) -> int:
    """Precompute the prompt embeddings of --prompts (and of the config's train / eval prompts
    and SD3 negative prompt) into --out or model.embeddings, with the model's text encoders."""
    import torch

    from orchestrator.inputs import preflight, prompt_arg
    from orchestrator.prompts import prompt_path, read_prompts
    from rollout.embeddings import write_embeddings
    from rollout.policy import text_encoder_from_config

    cfg = load_config(args.config, args.overrides)
    out = args.out or cfg.model.embeddings
    if not out:
        raise ConfigError("raygrpo embed: give --out DIR, or set model.embeddings in the config")
    preflight(cfg, embeddings=False)  # hub ids: confirmed before a text encoder is fetched
    prompts = [q for f in args.prompts for q in prompt_arg("--prompts", f)]
    prompts += read_prompts(prompt_path(cfg.orchestrator.train_prompts))
    prompts += read_prompts(prompt_path(cfg.orchestrator.eval_prompts)) + [cfg.model.negative_prompt]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    kind, encoder = text_encoder_from_config(cfg.model.model_copy(update={"embeddings": None}), device)
    path = write_embeddings(
        encoder, prompts, out, kind=kind, model=cfg.model.path, batch_size=args.batch_size
    )
    print(f"{len(set(prompts))} prompt embeddings written to {path}; set model.embeddings: {path}")
    return 0


def cmd_dashboard(args) -> int:
    """Serve a run dir's dashboard (finished or live) until Ctrl-C; it only reads the run dir."""
    from orchestrator.dashboard.server import DashboardServer

    run_dir = Path(args.run_dir)
    if not (run_dir / "status.json").is_file() and not (run_dir / "metrics.jsonl").is_file():
        raise UserError(
            f"--run-dir {run_dir}: no status.json or metrics.jsonl there; "
            "give the directory `raygrpo train --run-dir` wrote"
        )
    server = DashboardServer(run_dir, args.host, args.port)
    print(f"dashboard of {run_dir}: {server.url} (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raygrpo", description="GRPO for flow-matching text-to-image models, on Ray"
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a policy (README: the default tiny run)")
    t.add_argument("--config", required=True, help="YAML config (deploy/configs/*.yaml)")
    t.add_argument(
        "--run-dir", help="where metrics, samples and checkpoints go (default runs/<algorithm>-<time>)"
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run dir's newest checkpoint that verifies (a run dir that holds a run is "
        "refused without it)",
    )
    t.add_argument(
        "--allow-config-changes",
        action="store_true",
        help="with --resume: continue although the config differs from the checkpoint's in fields that "
        "change the run (they are listed either way)",
    )
    t.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    t.add_argument(
        "--no-ray",
        action="store_true",
        help="run the same loop in this process without Ray (one learner rank; for debugging and "
        "bench/overhead.py)",
    )
    t.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("eval", help="mean reward of a checkpoint (or the base model) over prompts")
    e.add_argument(
        "--checkpoint",
        required=True,
        help="a run dir or its checkpoints/latest (the newest checkpoint that verifies), a "
        "checkpoints/iter_* dir, or 'base'",
    )
    e.add_argument("--prompts", required=True, help="prompt file (one a line), or tiny:heldout")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", help="also write {reward name: mean} here")
    e.add_argument("--config", help="config (default: the checkpoint's config.yaml, else built-in defaults)")
    e.add_argument("--samples-per-prompt", type=int, default=4)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    e.set_defaults(func=cmd_eval)
    m = sub.add_parser("embed", help="precompute prompt embeddings so workers never load the text encoders")
    m.add_argument("--config", required=True, help="YAML config (its model section picks the text encoders)")
    m.add_argument("--prompts", required=True, action="append", help="prompt file (one a line); may repeat")
    m.add_argument("--out", help="cache directory (default: the config's model.embeddings)")
    m.add_argument("--batch-size", type=int, default=16, help="prompts per text-encoder call")
    m.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    m.set_defaults(func=cmd_embed)
    d = sub.add_parser("dashboard", help="serve the read-only dashboard of a run dir (README: Dashboard)")
    d.add_argument("--run-dir", required=True, help="the run dir `raygrpo train` wrote")
    d.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default loopback; see README for ssh -L)"
    )
    d.add_argument(
        "--port", type=int, default=8266, help="port (0: a free one; a busy one falls back to a free one)"
    )
    d.set_defaults(func=cmd_dashboard)
    s = sub.add_parser("scale", help="change the number of rollout workers of a running job")
    s.add_argument(
        "--workers", type=int, required=True, help="rollout workers wanted (applied between iterations)"
    )
    s.add_argument("--run", help="run dir of the job (needed only when several jobs run on the cluster)")
    s.add_argument(
        "--address",
        help="Ray cluster (GCS host:port or ray://host:10001; default: RAY_ADDRESS, else the "
        "cluster this machine belongs to)",
    )
    s.add_argument("--wait", action="store_true", help="wait until the job has applied it")
    s.add_argument("--timeout", type=float, default=600, help="seconds --wait waits")
    s.set_defaults(func=cmd_scale)
    return p


def main(argv=None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    overrides = [
        a for a in extra if "=" in a and not a.startswith("-")
    ]  # key=value after a flag: still an override
    if len(overrides) != len(extra) or (overrides and not hasattr(args, "overrides")):
        p.error(
            f"unrecognized arguments: {' '.join(a for a in extra if a not in overrides) or ' '.join(extra)}"
        )
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    try:
        return args.func(args)
    except UserError as err:  # nothing was started: what to fix
        print(f"raygrpo: {err}", file=sys.stderr)
        return 2
    except RunStopped as err:  # the run stopped on purpose: which actor / input, and how to resume
        print(f"raygrpo: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""sim_scale.py's result files: <out>.json, <out>.md (tables) and <out>.png (figures vs N)."""

from __future__ import annotations

import json
from pathlib import Path

MIB = 2**20


def rollout_tail(r: dict) -> float:
    """The slow worker's cost seen in the rollout phase alone (less exposed to the machine's
    noise in the other phases): extra rollout-phase time ÷ the even step."""
    e, s = r["even"], r["one_slow"]
    return (s["phases_s"]["rollout"] - e["phases_s"]["rollout"]) / e["wall_s"]


def _row(n, r) -> str:
    e, s = r["even"], r["one_slow"]
    return (
        f"| {n} | {e['wall_s']:.3f} | {e['overhead_s'] * 1e3:.0f} | {e['driver_cpu_s'] * 1e3:.0f} | "
        f"{e['rollout_to_update_s'] * 1e3:.0f} ({e['rollout_to_update_minus_scoring_s'] * 1e3:.0f}) | "
        f"{e['sync_s'] * 1e3:.0f} ({e['sync_overhead_s'] * 1e3:.0f}) | {e['bytes_put'] / MIB:.0f} | "
        f"{e['bytes_read'] / MIB:.0f} | {e['store_peak_bytes'] / MIB:.0f} | {s['wall_s']:.3f} | "
        f"{r['tail_cost']:+.1%} ({rollout_tail(r):+.1%}) |"
    )


def tables(result: dict) -> list[str]:
    spec, mem = result["spec"], result["actor_memory"]
    lines = [
        f"Machine: {result['machine']['machine']}, torch {result['machine']['torch']}, "
        f"ray {result['machine']['ray']}, "
        f"load average at start {result['machine']['load_average_at_start']}. Command: `{result['command']}`",
        "",
        f"Simulated waits (tiny model's phase shares, scaled): rollout {spec['rollout_s_per_group']:.3f} s "
        f"per group, update {spec['learner_s']:.3f} s, scoring {spec['reward_s_per_image'] * 1e3:.2f} ms "
        f"per image per scorer. Payload per image: {spec['image_side']}² RGB uint8 + {spec['transitions']} × "
        f"{spec['latent_tokens']} × "
        f"{spec['latent_channels']} latents at {spec['latent_bytes']} B. Each simulated rollout actor: "
        f"{mem['actor_pss_mib_median']:.0f} MiB PSS.",
        "",
        "| N | step (s) | driver overhead (ms) | driver CPU (ms) "
        "| last rollout → update (ms) (minus scoring) | "
        "sync (ms) (minus waits) | MiB put | MiB read | store peak (MiB) | step, 1 worker 2× slow (s) | "
        "tail cost (rollout phase only) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(n, r) for n, r in result["sweep"].items()]
    for key, label in (("fit_overhead_s", "driver overhead (wall)"), ("fit_driver_cpu_s", "driver CPU")):
        f = result[key]
        lines.append("")
        if f["best"] is None:
            lines.append(f"Growth of {label}: {f['note']}.")
            continue
        lines.append(
            f"Growth of {label}: "
            + "; ".join(
                f"{m}: a = {f[m]['a_s'] * 1e3:.1f} ms, b = {f[m]['b_s'] * 1e3:.3f} ms, "
                f"residual {f[m]['residual_ss']:.2e} s², reaches 2 % of a 300 s FLUX iteration (6 s) at N ≈ "
                f"{f[m]['crosses_2pct_at_workers'] or 'never (no growth)'}"
                for m in ("O(N)", "O(N log N)")
            )
            + f". Better fit: **{f['best']}**."
        )
    ser = result["serialization"]
    lines += [
        "",
        "Worker-side payload cost (not driver time), put + get through Ray's serializer, per image: "
        + "; ".join(
            f"{k}: {v['bytes_per_image'] / MIB:.1f} MiB, put {v['put_s_per_image'] * 1e3:.1f} ms, get "
            f"{v['get_s_per_image'] * 1e3:.1f} ms"
            for k, v in ser.items()
        ),
    ]
    if "steal" in result:
        st = result["steal"]
        lines += [
            "",
            f"Work stealing: {st['groups_per_worker']} groups per worker, static split (1 unit per worker) "
            f"vs {st['units_per_worker']} units per worker.",
            "",
            "| N | step static (s) | 1 slow, static (s) | tail static (rollout phase) | step stealing (s) | "
            "1 slow, stealing (s) | tail stealing (rollout phase) |",
            "|---|---|---|---|---|---|---|",
        ]
        for n in st["static"]:
            a, b = st["static"][n], st["stealing"][n]
            lines.append(
                f"| {n} | {a['even']['wall_s']:.3f} | {a['one_slow']['wall_s']:.3f} | {a['tail_cost']:+.1%} "
                f"({rollout_tail(a):+.1%}) | {b['even']['wall_s']:.3f} | {b['one_slow']['wall_s']:.3f} | "
                f"{b['tail_cost']:+.1%} ({rollout_tail(b):+.1%}) |"
            )
    if result.get("driver_profile"):
        prof = result["driver_profile"]
        lines += [
            "",
            f"Driver profile at N = {prof['workers']} (cProfile, {prof['iterations']} iterations, own time "
            "per iteration):",
            "",
            "| function | ms / iteration | calls / iteration |",
            "|---|---|---|",
        ]
        lines += [
            f"| `{f['function']}` | {f['tottime_s_per_iteration'] * 1e3:.1f} | "
            f"{f['calls_per_iteration']:.0f} |"
            for f in prof["top"]
        ]
    return lines


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [int(n) for n in result["sweep"]]
    even = [result["sweep"][n]["even"] for n in result["sweep"]]
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    a = ax[0, 0]
    a.plot(ns, [e["overhead_s"] * 1e3 for e in even], "o-", label="driver overhead (wall)")
    a.plot(ns, [e["driver_cpu_s"] * 1e3 for e in even], "s-", label="driver CPU")
    a.set(
        xlabel="rollout workers N", ylabel="ms per iteration", title="driver time outside the workers' waits"
    )
    a = ax[0, 1]
    a.plot(ns, [e["bytes_put"] / MIB for e in even], "o-", label="put per iteration")
    a.plot(ns, [e["bytes_read"] / MIB for e in even], "s-", label="read per iteration")
    a.plot(ns, [e["store_peak_bytes"] / MIB for e in even], "^-", label="store peak")
    a.set(xlabel="rollout workers N", ylabel="MiB", title="object store")
    a = ax[1, 0]
    a.plot(ns, [e["rollout_to_update_s"] * 1e3 for e in even], "o-", label="last rollout → update")
    a.plot(ns, [e["rollout_to_update_minus_scoring_s"] * 1e3 for e in even], "s-", label="… minus scoring")
    a.plot(ns, [e["sync_s"] * 1e3 for e in even], "^-", label="sync phase")
    a.set(xlabel="rollout workers N", ylabel="ms", title="hand-offs")
    a = ax[1, 1]
    a.plot(
        ns,
        [rollout_tail(result["sweep"][n]) * 100 for n in result["sweep"]],
        "o-",
        label="1 group per worker",
    )
    if "steal" in result:
        st = result["steal"]
        sn = [int(n) for n in st["static"]]
        a.plot(
            sn,
            [rollout_tail(st["static"][n]) * 100 for n in st["static"]],
            "s--",
            label=f"{st['groups_per_worker']} groups/worker, static",
        )
        a.plot(
            sn,
            [rollout_tail(st["stealing"][n]) * 100 for n in st["stealing"]],
            "^-",
            label=f"{st['groups_per_worker']} groups/worker, {st['units_per_worker']} units (stealing)",
        )
    a.axhline(10, color="grey", lw=0.8)
    a.set(
        xlabel="rollout workers N",
        ylabel="% of the even step",
        title="tail: one worker 2× slower (rollout phase)",
    )
    for a in ax.flat:
        a.set_xscale("log", base=2)
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.suptitle(f"sim_scale: {result['machine']['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    result.setdefault(
        "setup", {"command": result["command"], "machine": result["machine"]["machine"]}
    )  # readme_tables
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = tables(result)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(result, out.with_suffix(".png"))
    print("\n".join(lines))

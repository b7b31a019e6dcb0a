"""The reward-hacking monitor: held-out evaluations during training, judged against the start.

Every `orchestrator.heldout_every` iterations the driver evaluates the current policy on the
held-out prompts (ODE samples, the same prompts and seeds every time) with the trained
scorers and the held-out judges (`reward.heldout`, e.g. ocr_heldout and fidelity, which
are never trained on). The first evaluation — the "before" one — is the baseline:

    train_reward(t) = Σ_m w_m · mean_m(t)          over the trained scorers m
    rose            = train_reward(t) > train_reward(0)
    fell(j)         = judge_j(t) < (1 − tolerance) · judge_j(0)      for each held-out judge j
    hacking         = rose and any fell(j)

A warning names the judges that fell (CLI line, status.json `hacking_warning`, the
dashboard's banner); with `orchestrator.hacking_stop` the run checkpoints and stops there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator import metrics as M
from orchestrator.config import Config


@dataclass
class Verdict:
    row: dict  # metric name -> value, for this iteration's metrics line
    warning: str | None = None  # set when hacking is suspected
    fallen: list[str] = field(default_factory=list)  # judges that fell beyond the tolerance
    stop: bool = False  # the run should stop here (a warning and orchestrator.hacking_stop)


class HackingMonitor:
    def __init__(self, cfg: Config):
        o = cfg.orchestrator
        self.every = o.heldout_every
        self.tolerance = o.hacking_tolerance
        self.stop = o.hacking_stop
        self.weights = {s.name: s.weight for s in cfg.reward.scorers}
        self.judges = [s.name for s in cfg.reward.heldout]
        self.base: dict[str, float] | None = None

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def due(self, iteration: int) -> bool:
        return self.enabled and (iteration + 1) % self.every == 0

    def train_reward(self, means: dict[str, float]) -> float:
        return sum(w * means[name] for name, w in self.weights.items())

    def baseline(self, means: dict[str, float]) -> None:
        """The held-out means of the policy before training (the comparison point)."""
        self.base = {k: v for k, v in means.items() if k != "seconds"}

    def check(self, iteration: int, means: dict[str, float]) -> Verdict:
        """The metrics of one held-out evaluation and, if the rule fires, a warning."""
        if self.base is None:
            raise RuntimeError("HackingMonitor.check before baseline(): evaluate the base policy first")
        now, then = self.train_reward(means), self.train_reward(self.base)
        row = {M.heldout_mean(k): v for k, v in means.items() if k != "seconds"}
        row[M.HELDOUT_TRAIN_REWARD] = now
        fallen = [j for j in self.judges if means[j] < (1 - self.tolerance) * self.base[j]]
        hacking = now > then and bool(fallen)
        row[M.HACKING] = int(hacking)
        if not hacking:
            return Verdict(row)
        drops = ", ".join(
            f"{j} {self.base[j]:.3f} -> {means[j]:.3f} ({100 * (means[j] / self.base[j] - 1):+.0f} %)"
            for j in fallen
        )
        warning = (
            f"reward hacking suspected at iteration {iteration}: held-out training reward "
            f"{then:.3f} -> {now:.3f} while {drops} (tolerance {100 * self.tolerance:.0f} %); "
            "look at the sample grids"
        )
        return Verdict(row, warning, fallen, stop=self.stop)

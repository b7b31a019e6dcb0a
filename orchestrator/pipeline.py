"""Which iterations' rollouts are in flight: `orchestrator.mode` sync or async.

    sync   iteration k's rollouts start and finish inside iteration k.
    async  iteration k also starts iteration k+1's rollouts, on the weights the workers hold
           now, so they run while the learner scores and updates on k. Those samples are then
           one policy version stale when the learner trains on them (`staleness` = 1), and the
           importance ratio uses the log-probs stored with them — the generating version's.

Weights change only after every launched rollout has finished (`Cluster.sync` settles the
pool first), so a batch's samples and stored log-probs always come from one version. An
iteration that ends in a checkpoint starts nothing ahead: a checkpoint never has rollouts in
flight, and `--resume` continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

from orchestrator.config import Config


class RolloutPipeline:
    def __init__(self, cfg: Config, run, cluster):
        self.cfg, self.run, self.cluster = cfg, run, cluster
        o = cfg.orchestrator
        self.ahead = o.max_staleness if o.mode == "async" else 0
        self.started: dict[int, list] = {}  # iteration -> its launched batches

    def start(self, iteration: int) -> None:
        """Draw prompts and launch the rollouts of `iteration`, and in async mode of the next
        `max_staleness` iterations too (see module docstring)."""
        o = self.cfg.orchestrator
        ahead = 0 if self.run.due(iteration) else self.ahead
        for k in range(iteration, min(iteration + ahead, o.iterations - 1) + 1):
            if k not in self.started:
                groups = list(enumerate(self.run.prompts.next(o.prompts_per_iter)))
                self.started[k] = self.cluster.launch(groups, k, preview=k % o.sample_every == 0)

    def take(self, iteration: int) -> list:
        """The finished rollouts of `iteration` (a dead worker's groups re-run)."""
        return self.cluster.collect(self.started.pop(iteration))

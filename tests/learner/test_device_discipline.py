"""The learner's GPU path, checked without a GPU (tests/fixtures/meta.py): the policy on the meta
device, which refuses CPU operands as CUDA does, and a 'meta:gloo' default process group, which
refuses CPU tensors in collectives as NCCL does. Each of the three tests below failed on main
@ 02bd87f with the crash a GPU run would have had:

    1 rank    clipped_objective: new log-probs on the device, old ones, advantages, chunk ids
              and mask on the CPU ("Tensor on device cpu is not on the expected device meta!")
    2 ranks   _all_reduce put a CPU tensor in the default group ("No backend type associated
              with device type cpu")
    cluster   Cluster._learner_group chose the learner's device on the driver
"""

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import learner.worker
from learner.chunking import ChunkSelector
from learner.config import LearnerConfig
from learner.engine import free_port
from learner.schedule import pack_units, sample_units
from learner.worker import LearnerWorker, Minibatch
from rollout.config import ModelConfig
from rollout.plan import sde_plan
from rollout.policy import policy_from_config
from rollout.sampler import generate
from tests.fixtures.meta import MetaHost, MetaRank, PlainEngine

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["a red circle at the center"] * 3 + ["a blue square at the top left"] * 2
ADV = [1.0, -0.5, 0.3, 1.0, -1.0]


@pytest.fixture(scope="module")
def flux_factory(flux_dir):
    """Builds the tiny FLUX (LoRA, gradient checkpointing) on the device it is given."""
    return functools.partial(
        policy_from_config,
        ModelConfig(path=str(flux_dir), resolution=32, gradient_checkpointing=True, lora={"rank": 4}),
    )


@pytest.fixture(scope="module")
def batch(flux_factory):
    """5 rollouts (CPU) of a 4-step plan, chunks [1, 3] with one drawn per sample (rows train 1 or 3)."""
    plan = sde_plan(4, noise_level=0.7, sde_kind="flow", train_last=True)
    select = ChunkSelector(mode="fixed", sizes=(1, 3), fraction=0.5)
    _, traj = generate(
        flux_factory(device="cpu"),
        PROMPTS,
        [0, 0, 0, 1, 1],
        plan,
        [1, 1, 1, 2, 2],
        [3, 4, 5, 6, 7],
        0,
        select=select,
    )
    assert set((traj.train_steps >= 0).sum(dim=1).tolist()) == {1, 3}
    return traj


def test_one_rank_update_with_the_policy_on_a_device_keeps_every_tensor_there(
    flux_factory, batch, monkeypatch
):
    monkeypatch.setattr(learner.worker, "build_engine", PlainEngine)  # DeepSpeed cannot run on meta
    cfg = LearnerConfig(micro_batch=2, kl_coef=0.1)  # KL: the reference forward (LoRA adapters off) too
    worker = LearnerWorker(lambda device=None: flux_factory(device="meta"), cfg, 0, 1)
    worker.setup("127.0.0.1", free_port())
    minibatches = [[0, 1, 2], [3, 4]]  # two optimizer steps
    with MetaHost() as host:
        stats = worker.train(
            batch, torch.tensor(ADV), [Minibatch(rows=mb, size=len(mb)) for mb in minibatches]
        )
    report = worker.engine.report()
    # one backward per pass: each minibatch's (sample, chunk) units packed into passes of ≤ 2 inputs
    passes = sum(
        len(pack_units(sample_units(batch.chunk_ids, mb), 2, lambda r, c: (r, c))) for mb in minibatches
    )
    assert len(report["backwards"]) == passes and report["steps"] == 2
    assert set(report["backwards"]) == {("meta", ())}  # every loss was a scalar on the device
    assert report["grad_devices"] == ["meta"] and report["param_devices"] == ["meta"]
    assert host.host_reads > 0 and {"loss", "ratio_mean", "kl"} <= set(stats)


def test_two_ranks_reduce_host_counts_without_a_cpu_tensor_in_the_nccl_like_group(
    local_ray, flux_factory, batch
):
    import ray

    cfg = LearnerConfig(micro_batch=2, world_size=2, torch_threads=1)
    remote = ray.remote(MetaRank).options(num_cpus=0)
    port = free_port()
    ranks = [remote.remote(flux_factory, cfg, r, 2, "127.0.0.1", port) for r in range(2)]
    try:
        ref = ray.put(batch)
        # two minibatches; in the second ([3]) rank 0's shard is empty: it runs zero-weight passes
        out = ray.get(
            [a.update.remote([ref], [5], list(range(5)), ADV, [[0, 1, 2], [3]]) for a in ranks], timeout=300
        )
        published = ray.get([a.publish.remote() for a in ranks], timeout=120)
    finally:
        for a in ranks:
            ray.kill(a)
    # rank 0 trains sample 0 and then nothing, rank 1 samples 1-2 and then 3: per step both run the
    # larger count of backward passes (the max over ranks, reduced on the host group), all on meta
    (_, report0), (_, report1) = out
    assert (
        len(report0["backwards"]) == len(report1["backwards"]) >= 2
        and report0["steps"] == report1["steps"] == 2
    )
    assert report0["grad_devices"] == report1["grad_devices"] == ["meta"]
    (state, checksum), (other, none) = published
    assert other is None and none is None and isinstance(checksum, str)
    assert state and {device for _, device in state.values()} == {"cpu"}  # published copies are host tensors


CLUSTER_SCRIPT = """
import os, torch, ray
ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
torch.cuda.is_available = lambda: True  # the driver believes it has CUDA; the learner's node has none
from orchestrator.cluster import Cluster
from orchestrator.config import load_config
cfg = load_config("deploy/configs/tiny.yaml", ["learner.num_gpus=1", "learner.world_size=1"])
cluster = Cluster.__new__(Cluster)
cluster.cfg = cfg
try:
    cluster._learner_group()  # sets cluster.learners and cluster.pg; Cluster.__init__ then sets them up
    learners = cluster.learners
    addr, port = ray.get(learners[0].rendezvous.remote())
    ray.get([a.setup.remote(addr, port) for a in learners])
    state, checksum = ray.get(learners[0].publish.remote())
    print("LEARNER_OK", len(state), checksum)
finally:
    ray.shutdown()
"""


def test_cluster_lets_each_learner_rank_pick_its_own_device():
    """The driver's view of CUDA must not decide the learner's device: here the driver claims a
    GPU that the learner actor (given a Ray GPU resource on a CPU-only machine) does not have.
    On main the driver-made factory said 'cuda' and the actor failed to build its policy."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run(
        [sys.executable, "-c", CLUSTER_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert "LEARNER_OK" in done.stdout, done.stdout[-2000:] + done.stderr[-4000:]


def test_every_actor_picks_its_device_itself_and_warns_when_its_gpu_is_not_visible():
    """Rollout, reward and learner actors decide their device in the actor from what Ray gave them;
    given a GPU this process cannot see (this machine has none), each says so and uses the CPU."""
    import warnings

    from learner.engine import actor_device
    from reward.worker import device_of
    from rollout.worker import pick_device

    assert not torch.cuda.is_available()
    for pick in (pick_device, device_of, actor_device):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no GPU asked for: no warning
            assert pick(0) == "cpu"
        with pytest.warns(UserWarning, match="sees no CUDA device"):
            assert pick(1) == "cpu"

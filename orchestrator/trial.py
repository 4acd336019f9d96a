"""`run_trial`: one training run of the paper, start to finish, resumable. No Ray here.

An epoch is: collect ``steps_per_epoch`` lock-step steps (every task's environment once per
step, treatments' step hooks after each), one PPO update, then at evaluation points an
evaluation of every task and the plasticity metrics, then a ``train`` row; at checkpoint
points the buffered rows go to Parquet and only then the full state to the checkpointer.

Determinism: the trial seed fixes torch's global RNG (initialisation, treatments), and
derives independent numpy/torch streams for episode layouts, minibatch order, action
sampling, evaluation and metric batches. Every stream is part of the checkpoint, and
evaluation and metric streams are re-derived from ``(seed, step)``, so a resumed trial
produces the same rows as one that never stopped.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

# torch.optim imports torch._dynamo when a process builds its first optimizer. Imported with
# torch, it is a start-up cost of the process, like torch itself, not part of its first
# trial's clock (perf/wall_seconds, perf/cpu_seconds, perf/env_fraction). A private module,
# named only to import it early (no API of it is used).
import torch._dynamo  # noqa: F401

from agents.agent import ActorCritic, build_agent
from agents.metrics import measure_plasticity
from agents.networks import ONEDNN_MIN_BATCH, frozen_weights, onednn
from agents.plasticity_buffer import PlasticityBuffer
from agents.ppo import Rollout, ppo_update
from agents.treatments import build_treatment
from envs.evaluator import BatchedEvaluator
from envs.fast_obs import ObservationPath
from envs.multitask import EnvClock, LockStepEnv
from mtrl_plasticity.benchmarks import get_benchmark
from orchestrator import schema
from orchestrator.checkpoint import Checkpointer
from orchestrator.config import TrialConfig
from orchestrator.sink import ParquetSink
from orchestrator.trackers.base import NO_TRACKERS, TrackerSet

CHECKPOINT_FORMAT = 1

# Stream ids for numpy SeedSequence([seed, stream, ...]): never reorder.
_ENV_STREAM, _UPDATE_STREAM, _COLLECT_STREAM, _EVAL_STREAM, _METRIC_STREAM = range(5)


@dataclass(frozen=True)
class TrialResult:
    run_key: str
    steps: int
    epochs: int
    resumed_from_step: int | None
    cpu_seconds: float = 0.0
    """CPU time of the trial's thread over all its runs (``perf/cpu_seconds`` of the last report)."""


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _torch_generator(seed: int, *stream: int) -> torch.Generator:
    seq = np.random.SeedSequence([seed, *stream])
    return torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))


def make_policy(actor, device: torch.device, generator: torch.Generator):
    """Stochastic policy over numpy batches: one forward pass, actions sampled on the CPU."""

    @torch.inference_mode()
    def policy(obs: np.ndarray, task: np.ndarray) -> np.ndarray:
        # Below ONEDNN_MIN_BATCH, oneDNN's per-call set-up outweighs the convolutions themselves.
        with onednn(enabled=len(task) >= ONEDNN_MIN_BATCH):
            logits = actor(torch.from_numpy(obs).to(device), torch.from_numpy(task).to(device))
        probs = torch.softmax(logits.float().cpu(), dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1).numpy()

    return policy


class _Trial:
    """The mutable state of one trial; ``run_trial`` drives it."""

    def __init__(self, config: TrialConfig) -> None:
        self.config = config
        self.benchmark = get_benchmark(config.benchmark)
        self.tasks = self.benchmark.tasks
        torch.set_num_threads(config.torch_threads)
        self.device = resolve_device(config.device)
        seed = config.seed
        random.seed(seed)
        torch.manual_seed(seed)
        self.treatment = build_treatment(config.treatment, config.treatment_params, total_steps=config.total_steps)
        self.agent: ActorCritic = build_agent(
            config.arch, self.benchmark.n_tasks, config.experts, config.hidden_size,
            config.actor_lr, config.critic_lr, self.treatment.build_optimizer, self.device)
        self.treatment.setup(self.agent)
        self.clock = EnvClock()
        self.env_rng = np.random.default_rng([seed, _ENV_STREAM])
        self.update_rng = np.random.default_rng([seed, _UPDATE_STREAM])
        self.collect_gen = _torch_generator(seed, _COLLECT_STREAM)
        observations = ObservationPath(config.fast_observations, config.check_observations)
        self.env = LockStepEnv(self.tasks, self.env_rng, self.clock, observations)
        self.evaluator = BatchedEvaluator(self.tasks, config.eval_episodes, self.clock, observations, config.gamma)
        self.buffer = PlasticityBuffer(config.plasticity_buffer_size)
        self.step = 0
        self.epoch = 0
        self.wall_seconds = 0.0
        self.cpu_seconds = 0.0
        self.env.reset()

    # --- checkpoint state ---------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_json(),
            "progress": {"step": self.step, "epoch": self.epoch, "wall_seconds": self.wall_seconds,
                         "cpu_seconds": self.cpu_seconds, "env_seconds": self.clock.seconds},
            "agent": self.agent.state_dict(),
            "treatment": self.treatment.state_dict(),
            "envs": self.env.state_dict(),
            "buffer": self.buffer.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "python": json.dumps(random.getstate()),
                "env": json.dumps(self.env_rng.bit_generator.state),
                "update": json.dumps(self.update_rng.bit_generator.state),
                "collect": self.collect_gen.get_state(),
            },
        }

    def check_state(self, state: dict) -> None:
        """``ValueError`` unless ``state`` is a checkpoint of this very trial; changes nothing."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')!r} is not {CHECKPOINT_FORMAT}")
        try:
            config = TrialConfig.from_json(state["config"])
        except Exception:  # a key missing, not JSON, not a config: not this trial's either
            raise ValueError("it holds no configuration of this tool") from None
        if config.run_key != self.config.run_key:
            raise ValueError(f"it belongs to trial {config.run_key}, not {self.config.run_key}")
        if config != self.config:
            raise ValueError(f"it belongs to a different configuration of {self.config.run_key}")

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint that :meth:`check_state` accepted (``run_trial`` checks it first)."""
        progress = state["progress"]
        self.step, self.epoch = int(progress["step"]), int(progress["epoch"])
        self.wall_seconds = float(progress["wall_seconds"])
        self.cpu_seconds = float(progress.get("cpu_seconds", 0.0))  # absent from older checkpoints
        self.clock.seconds = float(progress["env_seconds"])
        self.agent.load_state_dict(state["agent"])
        self.treatment.load_state_dict(state["treatment"])
        self.buffer.load_state_dict(state["buffer"])
        rng = state["rng"]
        self.env_rng.bit_generator.state = json.loads(rng["env"])
        self.update_rng.bit_generator.state = json.loads(rng["update"])
        self.collect_gen.set_state(rng["collect"])
        python_state = json.loads(rng["python"])
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        # Replaying the environments must not disturb the restored streams: it uses none.
        self.env.load_state_dict(state["envs"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])

    # --- one epoch ----------------------------------------------------------------
    def collect(self) -> tuple[Rollout, list[tuple[int, float, int]]]:
        N, T = self.config.steps_per_epoch, self.benchmark.n_tasks
        obs = np.empty((N, T, 3, 7, 7), dtype=np.uint8)
        next_obs = np.empty_like(obs)
        actions = np.empty((N, T), dtype=np.int64)
        rewards = np.empty((N, T), dtype=np.float32)
        terminated = np.empty((N, T), dtype=bool)
        truncated = np.empty((N, T), dtype=bool)
        task_ids = np.arange(T, dtype=np.int64)
        policy = make_policy(self.agent.actor, self.device, self.collect_gen)
        finished: list[tuple[int, float, int]] = []
        for n in range(N):
            obs[n] = self.env.observations()
            actions[n] = policy(obs[n], task_ids)
            out = self.env.step(actions[n])
            next_obs[n], rewards[n] = out["next_obs"], out["reward"]
            terminated[n], truncated[n] = out["terminated"], out["truncated"]
            finished.extend(out["finished"])
            self.buffer.add(obs[n], task_ids)
            self.step += 1
            self.treatment.on_step(self.step, self.agent, self.buffer)
        if self.config.reset_episodes_each_epoch:
            # MOORE's Core.learn restarts every environment at each call: a running episode's
            # last transition bootstraps from V(s') as a truncation, then the episode is dropped.
            running = ~(terminated[-1] | truncated[-1])
            truncated[-1] |= running
            self.env.reset_where(running)
        return Rollout(obs, actions, rewards, next_obs, terminated, truncated), finished

    def evaluate(self) -> list[dict]:
        cfg = self.config
        seeds = np.random.default_rng([cfg.seed, _EVAL_STREAM, self.step]).integers(
            2**31 - 1, size=(self.benchmark.n_tasks, cfg.eval_episodes))
        policy = make_policy(self.agent.actor, self.device, _torch_generator(cfg.seed, _EVAL_STREAM, self.step))
        with frozen_weights(self.agent.actor):
            results = self.evaluator.evaluate(policy, seeds)
        rows = []
        for result in results:
            rows.append({
                **self._identity(),
                "task": result.task,
                "task_index": result.task_index,
                "episodes": result.episodes,
                "return_mean": float(np.mean(result.returns)),
                "return_std": float(np.std(result.returns)),
                "discounted_return_mean": float(np.mean(result.discounted_returns)),
                "normalised_return_mean": result.normalised_return_mean,
                "success_rate": result.success_rate,
                "episode_length_mean": float(np.mean(result.lengths)),
            })
        return rows

    def plasticity(self) -> dict[str, float]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, _METRIC_STREAM, self.step])
        obs, task = self.buffer.sample(cfg.metric_batch_size, rng)
        return measure_plasticity(
            self.agent, self.treatment,
            torch.from_numpy(obs).to(self.device), torch.from_numpy(task).to(self.device),
            dormant_tau=cfg.dormant_tau, srank_delta=cfg.srank_delta,
            generator=_torch_generator(cfg.seed, _METRIC_STREAM, self.step))

    def _identity(self) -> dict:
        return {"schema_version": schema.SCHEMA_VERSION, "sweep": self.config.sweep,
                "run_key": self.config.run_key, "seed": self.config.seed,
                "step": self.step, "epoch": self.epoch, "axes": self.config.axis_label, **self.config.axis_values}


def run_trial(config: TrialConfig, sink: ParquetSink, checkpointer: Checkpointer,
              trackers: TrackerSet = NO_TRACKERS) -> TrialResult:
    """Train ``config`` to its budget, resuming from ``checkpointer`` when it holds a state.

    Rows go to ``sink`` in segments written right before each checkpoint; the checkpointer
    receives ``save(state, metrics)`` at checkpoint points and ``report(metrics)`` after
    every other epoch. ``trackers`` (``orchestrator.trackers``) are told where the trial starts,
    get each epoch's train row and evaluation rows, and flush before each segment.
    """
    run_started, cpu_started = time.perf_counter(), time.thread_time()
    trial = _Trial(config)

    def accept(state: dict) -> None:
        # A checkpoint the trial refuses goes aside like a corrupt one, and the previous one is tried.
        nonlocal trial
        trial.check_state(state)
        try:
            trial.load_state_dict(state)
        except Exception:
            trial = _Trial(config)  # a state loaded half-way must not leak into the next try
            raise

    resumed_from = None
    state = checkpointer.load(accept)
    eval_rows: list[dict] = []
    train_rows: list[dict] = []
    if state is not None:
        resumed_from = trial.step
    trackers.start(resumed_from)
    finished = False
    try:
        if state is None:
            eval_rows.extend(trial.evaluate())
            trackers.log_epoch(0, None, eval_rows)
        _train_epochs(trial, sink, checkpointer, trackers, eval_rows, train_rows, run_started, cpu_started)
        finished = True
    finally:
        trackers.close(finished)
    return TrialResult(config.run_key, trial.step, trial.epoch, resumed_from, trial.cpu_seconds)


def _train_epochs(trial: _Trial, sink: ParquetSink, checkpointer: Checkpointer, trackers: TrackerSet,
                  eval_rows: list[dict], train_rows: list[dict], run_started: float, cpu_started: float) -> None:
    """The epochs from the trial's step to its budget (see :func:`run_trial`)."""
    config = trial.config
    segment_start = trial.step
    run_started -= trial.wall_seconds  # wall clock adds up over resumed runs
    cpu_started -= trial.cpu_seconds

    train_columns = schema.train_metric_columns(trial.treatment.counters())
    while trial.step < config.total_steps:
        epoch_started = time.perf_counter()
        rollout, finished = trial.collect()
        losses = ppo_update(trial.agent, rollout, config, trial.update_rng, trial.treatment)
        trial.epoch += 1
        metrics: dict[str, float] = dict(losses)
        new_evals: list[dict] = []
        if trial.step % config.eval_interval_steps == 0:
            new_evals = trial.evaluate()
            eval_rows.extend(new_evals)
            if config.measure_plasticity:
                metrics.update(trial.plasticity())
        returns = [ret for _, ret, _ in finished]
        metrics["charts/train_return_mean"] = float(np.mean(returns)) if returns else math.nan
        metrics["charts/train_episodes"] = float(len(returns))
        metrics["charts/env_steps"] = float(trial.step * trial.benchmark.n_tasks)
        metrics.update({f"sparsity/{k}": v for k, v in trial.treatment.sparsity(trial.agent).items()})
        counters = trial.treatment.counters()
        metrics.update({schema.counter_column(k): float(v) for k, v in counters.items()})
        trial.wall_seconds = time.perf_counter() - run_started
        metrics["perf/wall_seconds"] = trial.wall_seconds
        # CPU time of this thread: all of the trial's work at torch_threads=1, none of what a
        # scheduler around it spends (Tune reports it; bench/bench_sweep.py uses it).
        trial.cpu_seconds = time.thread_time() - cpu_started
        metrics["perf/cpu_seconds"] = trial.cpu_seconds
        metrics["perf/env_seconds"] = trial.clock.seconds
        metrics["perf/env_fraction"] = trial.clock.seconds / trial.wall_seconds
        metrics["perf/steps_per_second"] = config.steps_per_epoch / (time.perf_counter() - epoch_started)
        train_row = {**trial._identity(), **{c: metrics.get(c) for c in train_columns}}
        train_rows.append(train_row)
        trackers.log_epoch(trial.step, train_row, new_evals)

        report = {"step": trial.step, "epoch": trial.epoch, "run_key": config.run_key,
                  "eval/normalised_return": _mean_normalised(eval_rows, trial.step), **metrics}
        if trial.step % config.checkpoint_interval_steps == 0 or trial.step == config.total_steps:
            trackers.checkpoint(trial.step)  # what they hold up to here is never logged again
            sink.write_segment(eval_rows, train_rows, segment_start, trial.step)
            eval_rows, train_rows, segment_start = [], [], trial.step
            if trial.step == config.total_steps:
                sink.compact()
            checkpointer.save(trial.state_dict(), report)
        else:
            checkpointer.report(report)


def _mean_normalised(eval_rows: list[dict], step: int) -> float:
    values = [r["normalised_return_mean"] for r in eval_rows if r["step"] == step]
    return float(np.mean(values)) if values else math.nan

"""Lock-step environments, replayable state, and the batched evaluator."""

import numpy as np

from envs.evaluator import BatchedEvaluator, evaluate_sequentially
from envs.multitask import LockStepEnv, TaskEnv


def test_task_env_state_replays_exactly():
    env = TaskEnv("DoorKey-6x6-v0")
    env.reset(123)
    rng = np.random.default_rng(0)
    for action in rng.integers(7, size=40):
        _, _, terminated, truncated = env.step(action)
        assert not (terminated or truncated)
    state = env.state_dict()
    copy = TaskEnv("DoorKey-6x6-v0")
    copy.load_state_dict(state)
    assert np.array_equal(copy.obs, env.obs)
    for action in rng.integers(7, size=30):
        a = env.step(action)
        b = copy.step(action)
        assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]


def test_lockstep_env_steps_every_task_once_and_restarts_finished_episodes():
    env = LockStepEnv(("MultiRoom-N2-S4-v0", "Empty-5x5-v0"), np.random.default_rng(0))
    obs = env.reset()
    assert obs.shape == (2, 3, 7, 7) and obs.dtype == np.uint8
    finished = []
    for _ in range(45):  # MultiRoom-N2-S4 truncates at 40 steps
        out = env.step(np.array([1, 1]))  # turn right forever: never succeeds
        finished.extend(out["finished"])
    assert (0, 0.0, 40) in finished
    assert len(env.envs[0].actions) == 5


def test_batched_evaluation_equals_one_episode_at_a_time():
    tasks = ("Empty-5x5-v0", "LavaGapS7-v0")
    seeds = np.arange(8).reshape(2, 4) + 100

    def forward_then_turn(obs, task):  # deterministic: no sampling to line up
        return np.where(obs[:, 0, 3, 5] == 2, 1, 2)  # wall ahead -> turn right, else forward

    batched = BatchedEvaluator(tasks, 4).evaluate(forward_then_turn, seeds)
    sequential = evaluate_sequentially(tasks, forward_then_turn, seeds)
    for a, b in zip(batched, sequential, strict=True):
        assert a.task == b.task
        np.testing.assert_array_equal(a.returns, b.returns)
        np.testing.assert_array_equal(a.lengths, b.lengths)
    assert batched[0].success_rate > 0  # the walker reaches Empty-5x5's goal sometimes

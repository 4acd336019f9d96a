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


def test_discounted_return_of_a_scripted_episode():
    """Empty-5x5: forward, forward, turn right, forward, forward reaches the goal at step 5 of 100."""
    script = iter([2, 2, 1, 2, 2])

    def scripted(obs, task):
        return np.array([next(script)])

    [result] = BatchedEvaluator(("Empty-5x5-v0",), 1, gamma=0.9).evaluate(scripted, np.array([[7]]))
    reward = 1 - 0.9 * (5 / 100)  # MiniGrid's success reward at step 5 of max_steps 100
    assert result.lengths.tolist() == [5] and result.returns.tolist() == [reward]
    assert result.discounted_returns.tolist() == [0.9 ** 4 * reward]  # the reward comes at t = 4


def test_discounted_returns_equal_mushroom_rls_compute_j_on_a_recorded_evaluation():
    from mushroom_rl.utils.dataset import compute_J

    tasks = ("Empty-5x5-v0", "LavaGapS7-v0")
    seeds = np.arange(6).reshape(2, 3) + 200
    gamma = 0.99

    def forward_then_turn(obs, task):
        return np.where(obs[:, 0, 3, 5] == 2, 1, 2)

    batched = BatchedEvaluator(tasks, 3, gamma=gamma).evaluate(forward_then_turn, seeds)
    sequential = evaluate_sequentially(tasks, forward_then_turn, seeds, gamma=gamma)
    for i, task in enumerate(tasks):
        # The same episodes recorded as mushroom-rl's dataset: (s, a, r, s', absorbing, last) per step.
        dataset = []
        env = TaskEnv(task)
        for seed in seeds[i]:
            obs, last = env.reset(seed), False
            while not last:
                action = forward_then_turn(obs[None], np.array([i]))[0]
                next_obs, reward, terminated, truncated = env.step(action)
                last = terminated or truncated
                dataset.append((obs, np.array([action]), reward, next_obs, terminated, last))
                obs = next_obs
        assert batched[i].discounted_returns.tolist() == compute_J(dataset, gamma)
        assert sequential[i].discounted_returns.tolist() == compute_J(dataset, gamma)
        assert batched[i].returns.tolist() == compute_J(dataset, 1.0)
    assert any(r > 0 for r in batched[0].discounted_returns)  # a success is in there

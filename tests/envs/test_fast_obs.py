"""envs.fast_obs: the fast observation equals MiniGrid's gen_obs at every step, or is not used."""

import gymnasium as gym
import minigrid
import numpy as np
import pytest
from minigrid.core.grid import Grid
from minigrid.core.world_object import Ball, Wall
from minigrid.envs import DoorKeyEnv
from minigrid.minigrid_env import MiniGridEnv

from envs import fast_obs
from envs.fast_obs import ObservationMismatch, accelerate, is_accelerated, visible_cells
from testkit.fast_obs_check import (
    ALL_ENVS,
    EXTRA_ENVS,
    PAPER_ENVS,
    VIEW_SIZE_ENVS,
    CheckEnv,
    compare_run,
    first_difference,
)

# Compared steps per env and policy; with the resets each run adds, over 200k in all.
RANDOM_STEPS = 7_000
SCRIPTED_STEPS = 1_500

# Rare states each scripted run must reach (counts from its events), by env id.
MUST_REACH = {
    "MiniGrid-DoorKey-6x6-v0": ("picked up key", "door unlocked", "door opened", "dropped"),
    "MiniGrid-RedBlueDoors-6x6-v0": ("door opened", "door closed"),
    "MiniGrid-MultiRoom-N2-S4-v0": ("door opened",),
    "MiniGrid-KeyCorridorS3R3-v0": ("picked up key", "door unlocked", "dropped"),
    "MiniGrid-LockedRoom-v0": ("picked up key", "door unlocked", "door opened", "door closed"),
    "MiniGrid-Unlock-v0": ("picked up key", "door unlocked"),
    "MiniGrid-UnlockPickup-v0": ("door unlocked", "box toggled"),
    "MiniGrid-BlockedUnlockPickup-v0": ("picked up ball", "dropped", "door unlocked", "box toggled"),
    "MiniGrid-ObstructedMaze-1Dlhb-v0": ("box toggled", "picked up key", "picked up ball"),
    "MiniGrid-Fetch-8x8-N3-v0": ("picked up key", "picked up ball"),
    "MiniGrid-PutNear-8x8-N3-v0": ("picked up box", "dropped"),
    "MiniGrid-MultiRoom-N6-v0": ("door opened", "door closed"),
}


def test_the_check_set_covers_the_paper_tasks_and_more_mechanics():
    assert len(PAPER_ENVS) == 7
    assert len({e.env_id for e in EXTRA_ENVS}) >= 8
    see_through = [e for e in EXTRA_ENVS if dict(e.kwargs).get("see_through_walls")]
    assert len(see_through) == 1 and see_through[0].make().see_through_walls is True
    assert sorted(dict(e.kwargs)["agent_view_size"] for e in VIEW_SIZE_ENVS) == [3, 5, 9, 11]
    assert len(ALL_ENVS) * (RANDOM_STEPS + SCRIPTED_STEPS) >= 200_000


@pytest.mark.slow
@pytest.mark.parametrize("check_env", ALL_ENVS, ids=lambda e: e.name)
def test_fast_observation_equals_gen_obs_at_every_step(check_env):
    random_run = compare_run(check_env, RANDOM_STEPS, "random", seed=1)
    scripted = compare_run(check_env, SCRIPTED_STEPS, "scripted", seed=2)
    assert random_run.mismatches == [] and scripted.mismatches == []
    assert random_run.compared >= RANDOM_STEPS + 1 and scripted.compared >= SCRIPTED_STEPS + 1
    seen = random_run.events + scripted.events
    assert all(seen[f"direction {d}"] > 0 for d in range(4))
    assert seen["view leaves grid"] > 0
    for event in MUST_REACH.get(check_env.env_id, ()):
        assert scripted.events[event] > 0, f"scripted policy never reached {event!r} on {check_env.name}"


@pytest.mark.parametrize("size", [3, 5, 7, 9, 11])
def test_visible_cells_is_minigrid_process_vis(size):
    rng = np.random.default_rng(size)
    for density in (0.1, 0.3, 0.6):
        for _ in range(300):
            see_behind = rng.random((size, size)) > density
            grid = Grid(size, size)
            for x, y in zip(*np.nonzero(~see_behind), strict=True):
                grid.set(int(x), int(y), Wall())
            expected = grid.process_vis(agent_pos=(size // 2, size - 1))
            assert np.array_equal(visible_cells(see_behind), expected)


def test_accelerate_is_idempotent_and_keeps_the_game():
    plain = gym.make("MiniGrid-DoorKey-6x6-v0").unwrapped
    fast = accelerate(gym.make("MiniGrid-DoorKey-6x6-v0").unwrapped)
    bound = fast.gen_obs
    assert accelerate(fast) is fast and fast.gen_obs == bound and is_accelerated(fast)
    assert not is_accelerated(plain)
    rng = np.random.default_rng(0)
    a, b = plain.reset(seed=5)[0], fast.reset(seed=5)[0]
    for _ in range(500):
        action = int(rng.integers(0, 6))
        out_a, out_b = plain.step(action), fast.step(action)
        assert first_difference(out_b[0], out_a[0]) is None
        assert out_a[1:4] == out_b[1:4] and plain.agent_pos == fast.agent_pos
        if out_a[2] or out_a[3]:
            seed = int(rng.integers(1000))
            assert first_difference(fast.reset(seed=seed)[0], plain.reset(seed=seed)[0]) is None
    assert first_difference(b, a) is None


def test_a_wrapper_is_accelerated_through_its_unwrapped_env():
    env = gym.make("MiniGrid-Unlock-v0")
    assert accelerate(env) is env and is_accelerated(env.unwrapped)
    obs, _ = env.reset(seed=1)
    assert first_difference(obs, MiniGridEnv.gen_obs(env.unwrapped)) is None


class _OwnObservation(DoorKeyEnv):
    def gen_obs(self):
        obs = super().gen_obs()
        obs["image"] = obs["image"] * 0
        return obs


def test_an_env_class_overriding_gen_obs_keeps_its_own_with_one_warning_line(capsys, monkeypatch):
    monkeypatch.setattr(fast_obs, "_warned", set())
    env = accelerate(_OwnObservation(size=6))
    accelerate(_OwnObservation(size=6))
    assert not is_accelerated(env)
    assert env.reset(seed=0)[0]["image"].max() == 0  # its own gen_obs still runs
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["warning: fast observations off: _OwnObservation: the env class overrides gen_obs; "
                     "keeping MiniGrid's own gen_obs"]


def test_an_unverified_minigrid_version_keeps_minigrids_path(capsys, monkeypatch):
    monkeypatch.setattr(fast_obs, "_warned", set())
    monkeypatch.setattr(minigrid, "__version__", "3.3.0")
    env = accelerate(gym.make("MiniGrid-Empty-5x5-v0").unwrapped)
    assert not is_accelerated(env)
    assert "minigrid 3.3.0 is not a verified version (3.2.x)" in capsys.readouterr().err


def test_non_minigrid_envs_and_even_view_sizes_are_refused():
    with pytest.raises(TypeError, match="needs a MiniGrid env, got CartPoleEnv"):
        accelerate(gym.make("CartPole-v1"))
    env = gym.make("MiniGrid-Empty-5x5-v0").unwrapped
    env.agent_view_size = 4
    with pytest.raises(ValueError, match="odd agent_view_size >= 3, got 4"):
        accelerate(env)


def test_check_mode_names_env_step_and_cell_when_an_object_changes_colour_in_place():
    # The one thing the fast path assumes (static objects keep their colour); check mode catches it.
    env = accelerate(gym.make("MiniGrid-Empty-8x8-v0").unwrapped, check=True)
    env.reset(seed=0)
    ball = Ball("blue")
    env.grid.set(3, 1, ball)  # in view of the agent at (1, 1) facing east
    env.step(6)  # done: nothing happens; the ball is encoded blue
    ball.color = "red"
    with pytest.raises(ObservationMismatch) as caught:
        env.step(6)
    message = str(caught.value)
    assert message.startswith("fast observation differs from MiniGrid's on MiniGrid-Empty-8x8-v0 at step 2 "
                              "(agent at (1, 1), direction 0): view cell (")
    assert message.endswith("is (6, 2, 0), MiniGrid has (6, 0, 0)")


def test_scripted_policy_reaches_an_open_door_with_a_carried_key_on_doorkey():
    report = compare_run(CheckEnv("MiniGrid-DoorKey-5x5-v0"), 400, "scripted", seed=0)
    assert report.mismatches == []
    assert report.events["picked up key"] > 0 and report.events["door unlocked"] > 0


class _OwnGrid(Grid):
    pass


class _OwnGridEnv(DoorKeyEnv):
    def _gen_grid(self, width, height):
        super()._gen_grid(width, height)
        self.grid.__class__ = _OwnGrid


def test_a_grid_of_another_class_keeps_minigrids_path_with_one_warning_line(capsys, monkeypatch):
    monkeypatch.setattr(fast_obs, "_warned", set())
    env = accelerate(_OwnGridEnv(size=6))
    assert is_accelerated(env)
    obs, _ = env.reset(seed=0)
    assert first_difference(obs, MiniGridEnv.gen_obs(env)) is None
    obs, *_ = env.step(1)
    assert first_difference(obs, MiniGridEnv.gen_obs(env)) is None
    assert capsys.readouterr().err.splitlines() == [
        "warning: fast observations off: _OwnGridEnv: grid class _OwnGrid is not minigrid's Grid; "
        "keeping MiniGrid's own gen_obs for it"]

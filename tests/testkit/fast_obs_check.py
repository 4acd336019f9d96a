"""Comparing the fast observation path with MiniGrid's ``gen_obs``, step by step.

Used by ``tests/envs/test_fast_obs.py`` and ``bench/bench_obs.py --check``: each run steps
an accelerated env with a random or a scripted policy and, after every ``reset`` and ``step``,
compares what it returned with ``MiniGridEnv.gen_obs`` computed on the same state. The
scripted policy walks (breadth-first, on the true grid) to doors, keys, balls and boxes and
toggles, picks up and drops them, so runs reach the states random play rarely does; a run
counts those events so a test can assert they happened.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
import numpy as np
from minigrid.core.world_object import Door
from minigrid.minigrid_env import MiniGridEnv

from envs.benchmarks import PAPER_TASKS
from envs.fast_obs import accelerate, is_accelerated
from mtrl_plasticity.benchmarks import TASKS

LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE = range(6)
_DIR_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))  # MiniGrid's DIR_TO_VEC


@dataclass(frozen=True)
class CheckEnv:
    """A MiniGrid env id with constructor overrides, and what it is in the check set for."""

    env_id: str
    kwargs: tuple[tuple[str, object], ...] = ()
    why: str = ""

    @property
    def name(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.kwargs)
        return f"{self.env_id}[{extra}]" if extra else self.env_id

    def make(self) -> MiniGridEnv:
        return gym.make(self.env_id, **dict(self.kwargs)).unwrapped


PAPER_ENVS = tuple(CheckEnv(TASKS[t].env_id, why="paper task") for t in PAPER_TASKS)
EXTRA_ENVS = (
    CheckEnv("MiniGrid-KeyCorridorS3R3-v0", why="locked door, key, ball to fetch"),
    CheckEnv("MiniGrid-LockedRoom-v0", why="19x19, six doors, one locked"),
    CheckEnv("MiniGrid-Unlock-v0", why="key and locked door"),
    CheckEnv("MiniGrid-UnlockPickup-v0", why="box behind a locked door"),
    CheckEnv("MiniGrid-BlockedUnlockPickup-v0", why="ball blocking a locked door, box"),
    CheckEnv("MiniGrid-ObstructedMaze-1Dlhb-v0", why="key hidden in a box, blocking ball"),
    CheckEnv("MiniGrid-Fetch-8x8-N3-v0", why="keys and balls carried, see_through_walls=True"),
    CheckEnv("MiniGrid-PutNear-8x8-N3-v0", why="objects carried and dropped, see_through_walls=True"),
    CheckEnv("MiniGrid-Dynamic-Obstacles-8x8-v0", why="moving obstacles (grid.set every step)"),
    CheckEnv("MiniGrid-MultiRoom-N6-v0", why="25x25, five doors"),
    CheckEnv("MiniGrid-FourRooms-v0", why="19x19 open rooms"),
    CheckEnv("MiniGrid-LavaCrossingS11N5-v0", why="lava rivers"),
    CheckEnv("MiniGrid-DoorKey-8x8-v0", (("see_through_walls", True),), why="walls seen through"),
)
VIEW_SIZE_ENVS = tuple(
    CheckEnv(env_id, (("agent_view_size", size),), why=f"agent_view_size={size}")
    for env_id, size in (("MiniGrid-KeyCorridorS3R3-v0", 3), ("MiniGrid-DoorKey-8x8-v0", 5),
                         ("MiniGrid-LockedRoom-v0", 9), ("MiniGrid-MultiRoom-N6-v0", 11))
)
ALL_ENVS = PAPER_ENVS + EXTRA_ENVS + VIEW_SIZE_ENVS


@dataclass
class CheckReport:
    """What one comparison run saw."""

    env: str
    compared: int = 0
    """Observations compared (resets and steps)."""
    mismatches: list[str] = field(default_factory=list)
    """One line per differing observation: env, episode seed, step, first differing cell."""
    events: Counter = field(default_factory=Counter)
    """Rare states reached: ``door opened``, ``door unlocked``, ``picked up key``, ``dropped``,
    ``box toggled``, ``carrying`` (observations while carrying), ``view leaves grid``, ``direction 0-3``."""


def first_difference(fast: dict, reference: dict) -> str | None:
    """Where ``fast`` differs from MiniGrid's observation ``reference``, or ``None``."""
    a, b = fast["image"], reference["image"]
    if a.dtype != b.dtype or a.shape != b.shape or not a.flags.c_contiguous:
        return f"image {a.dtype}{a.shape} (contiguous={a.flags.c_contiguous}) vs {b.dtype}{b.shape}"
    if not np.array_equal(a, b):
        cell = tuple(int(c) for c in np.argwhere((a != b).any(axis=2))[0])
        return f"view cell {cell}: {tuple(a[cell].tolist())} vs MiniGrid {tuple(b[cell].tolist())}"
    if fast["direction"] != reference["direction"] or fast["mission"] != reference["mission"]:
        return f"direction/mission {fast['direction']!r}/{fast['mission']!r} vs " \
               f"{reference['direction']!r}/{reference['mission']!r}"
    return None


def _passable(cell) -> bool:
    return cell is None or (cell.can_overlap() and cell.type != "lava")


def _wanted(cell, carrying) -> bool:
    """Objects the scripted policy walks to: closed doors, things to pick up or open."""
    if cell is None:
        return False
    if cell.type == "door":  # a locked one only with a key in hand
        return not cell.is_open and (not cell.is_locked or getattr(carrying, "type", None) == "key")
    if cell.type == "box":
        return True
    return cell.can_pickup() and carrying is None


def scripted_action(env: MiniGridEnv, rng: np.random.Generator) -> int:
    """Walk to the nearest wanted object and toggle, pick up or drop; a random action 15% of the time."""
    if rng.random() < 0.15:
        return int(rng.integers(0, 6))
    grid, carrying = env.grid, env.carrying
    fx, fy = env.front_pos
    front = grid.get(fx, fy) if 0 <= fx < grid.width and 0 <= fy < grid.height else None
    if front is not None:
        if front.type == "door" and (not front.is_open or rng.random() < 0.2):
            return TOGGLE
        if front.type == "box":
            return TOGGLE if carrying is not None or rng.random() < 0.5 else PICKUP
        if front.can_pickup() and carrying is None:
            return PICKUP
    elif carrying is not None and rng.random() < 0.25:
        return DROP
    step = _first_step_towards_wanted(env)
    if step is None:  # nothing wanted in reach: free the hands (a ball may block the way), or wander
        return DROP if carrying is not None and front is None and rng.random() < 0.2 else int(rng.integers(0, 3))
    if step == env.agent_dir:
        return FORWARD
    return RIGHT if step == (env.agent_dir + 1) % 4 else LEFT


def _first_step_towards_wanted(env: MiniGridEnv) -> int | None:
    """Direction of the first move on a shortest path to a cell next to a wanted object."""
    grid, carrying = env.grid, env.carrying
    start = tuple(int(v) for v in env.agent_pos)
    first: dict[tuple[int, int], int | None] = {start: None}
    queue = deque([start])
    while queue:
        x, y = queue.popleft()
        for direction, (dx, dy) in enumerate(_DIR_VEC):
            nx, ny = x + dx, y + dy
            if not (0 <= nx < grid.width and 0 <= ny < grid.height):
                continue
            cell = grid.get(nx, ny)
            if _wanted(cell, carrying):
                # Face it from here: the first move of the path, or a turn if already here.
                return direction if first[(x, y)] is None else first[(x, y)]
            if (nx, ny) not in first and _passable(cell):
                first[(nx, ny)] = direction if first[(x, y)] is None else first[(x, y)]
                queue.append((nx, ny))
    return None


def _count_events(env: MiniGridEnv, report: CheckReport, action: int, front, front_state, carried) -> None:
    if action == TOGGLE and isinstance(front, Door):
        was_open, was_locked = front_state
        if not was_open and front.is_open:
            report.events["door opened"] += 1
        if was_open and not front.is_open:
            report.events["door closed"] += 1
        if was_locked and not front.is_locked:
            report.events["door unlocked"] += 1
    if action == TOGGLE and front is not None and front.type == "box":
        if env.grid.get(*env.front_pos) is not front:
            report.events["box toggled"] += 1
    if carried is None and env.carrying is not None:
        report.events[f"picked up {env.carrying.type}"] += 1
    if carried is not None and env.carrying is None:
        report.events["dropped"] += 1


def _count_view(env: MiniGridEnv, report: CheckReport) -> None:
    report.events[f"direction {env.agent_dir}"] += 1
    if env.carrying is not None:
        report.events["carrying"] += 1
    top_x, top_y, bot_x, bot_y = env.get_view_exts()
    if top_x < 0 or top_y < 0 or bot_x > env.width or bot_y > env.height:
        report.events["view leaves grid"] += 1


def compare_run(check_env: CheckEnv, steps: int, policy: str, seed: int = 0,
                max_mismatches: int = 10) -> CheckReport:
    """Step ``check_env`` ``steps`` times under ``policy`` (``random`` or ``scripted``), comparing each observation."""
    env = accelerate(check_env.make())
    if not is_accelerated(env):
        raise RuntimeError(f"{check_env.name} was not accelerated")
    rng = np.random.default_rng(seed)
    report = CheckReport(check_env.name)
    episode_seed = seed * 100_003

    def compare(obs: dict) -> None:
        report.compared += 1
        _count_view(env, report)
        where = first_difference(obs, MiniGridEnv.gen_obs(env))
        if where and len(report.mismatches) < max_mismatches:
            report.mismatches.append(f"{check_env.name} episode seed {episode_seed} step {env.step_count}: {where}")

    obs, _ = env.reset(seed=episode_seed)
    compare(obs)
    for _ in range(steps):
        action = scripted_action(env, rng) if policy == "scripted" else int(rng.integers(0, 6))
        fx, fy = env.front_pos
        inside = 0 <= fx < env.width and 0 <= fy < env.height
        front = env.grid.get(fx, fy) if inside else None
        front_state = (getattr(front, "is_open", None), getattr(front, "is_locked", None))
        carried = env.carrying
        obs, _, terminated, truncated, _ = env.step(action)
        _count_events(env, report, action, front, front_state, carried)
        compare(obs)
        if terminated or truncated:
            episode_seed += 1
            obs, _ = env.reset(seed=episode_seed)
            compare(obs)
    return report

"""MiniGrid's partial observation, computed from an encoded copy of the grid: same bytes.

``accelerate(env)`` makes a MiniGrid env (3.2.x) build its ``gen_obs`` result from whole-array
operations instead of MiniGrid's per-cell Python loops (``Grid.slice``, ``rotate_left``,
``process_vis``, ``encode``). MiniGrid keeps all of the game: dynamics, rewards, termination,
``max_steps``, seeding; only the observation is computed differently.

How it works. The env's grid is kept encoded as a ``uint8`` array padded with ``V - 1`` cells
of out-of-grid wall on every side (what ``Grid.slice`` returns outside the grid), next to a
``see_behind`` array. The agent's view is a table of flat offsets per direction (the slice and
the ``direction + 1`` left rotations folded together). Visibility is MiniGrid's row-by-row
propagation, looked up by the view's ``see_behind`` pattern in a memo filled by
:func:`visible_cells`; hidden cells then point at an all-zero slot and the agent's cell at a
slot holding what it carries (or empty), so the image is one gather.

Keeping the encoded grid in sync, without hooking MiniGrid:

* a new ``env.grid`` object, or ``step_count == 0`` (every ``reset``): encode the whole grid;
* otherwise the grid's cell list is compared with the last one seen (by identity, one C-level
  list comparison) and changed cells are re-encoded: ``grid.set`` by pick-ups, drops, boxes
  opened, obstacles moved, any env code;
* objects whose encoding can change in place are re-encoded on every observation: ``Door``
  (open/closed/locked) and any class that is not one of MiniGrid's own ``Wall``, ``Floor``,
  ``Key``, ``Ball``, ``Box``, ``Goal``, ``Lava`` (for those the code depends on the class and
  the colour only, which no MiniGrid env changes in place);
* what the agent carries is encoded on every observation.

Guarantees. For every observation, ``image`` has MiniGrid's dtype (``uint8``), shape
``(V, V, 3)`` (C-contiguous) and values; ``direction`` and ``mission`` are the env's. That
holds for any odd ``agent_view_size``, ``see_through_walls`` on or off, any position (the
view leaving the grid) and direction. Where the fast path does not know the observation
code, the env keeps MiniGrid's own ``gen_obs`` and one warning line is printed: a minigrid
version outside :data:`VERIFIED_MINIGRID`, an env class that overrides ``gen_obs``,
``gen_obs_grid`` or ``get_view_exts``, a grid that is not a plain ``Grid``. An agent outside
the grid or with an invalid direction also gets MiniGrid's ``gen_obs`` (and its errors).

MiniGrid has no hook for this, so the module uses two public attributes: it sets ``gen_obs``
on the env instance (``reset`` and ``step`` call ``self.gen_obs()``) and reads ``Grid.grid``,
the cell list. The version guard covers a minigrid that changes either.

Verification. ``tests/envs/test_fast_obs*.py`` compare both paths at every step (random
and scripted policies reaching opened doors, carried keys, toggled boxes) on the paper's
seven tasks, further MiniGrid envs with keys, locked doors, boxes, balls, moving obstacles
and large grids, ``see_through_walls`` on and off and view sizes 3 to 11, and
:func:`visible_cells` against ``Grid.process_vis`` on random patterns.
``python bench/bench_obs.py --check 1000000`` compares a million steps, and a trial with
``check_observations=true`` computes both paths at every step and stops at the first
difference (:class:`ObservationMismatch`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import minigrid
import numpy as np
from minigrid.core.constants import OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.world_object import Ball, Box, Floor, Goal, Key, Lava, Wall
from minigrid.minigrid_env import MiniGridEnv

VERIFIED_MINIGRID = ((3, 2),)
"""``(major, minor)`` releases of minigrid whose observation code this module reproduces."""

_STATIC_CLASSES = frozenset({Wall, Floor, Key, Ball, Box, Goal, Lava})
"""MiniGrid's classes whose code and ``see_behind`` depend on class and colour only."""

_OBSERVATION_METHODS = ("gen_obs", "gen_obs_grid", "get_view_exts")

_EMPTY = (OBJECT_TO_IDX["empty"], 0, 0)
_OUTSIDE = Wall().encode()  # Grid.slice fills cells outside the grid with Wall()

_HIDDEN_MEMO_LIMIT = 1 << 16
_hidden_memo: dict[tuple[int, bytes], np.ndarray] = {}
_warned: set[str] = set()


class ObservationMismatch(RuntimeError):
    """The fast path and MiniGrid's ``gen_obs`` disagreed (raised in check mode only)."""


@dataclass(frozen=True)
class ObservationPath:
    """How the project's envs compute observations (``TrialConfig``'s two settings)."""

    fast: bool = True
    """Through :func:`accelerate`'s fast path; ``False`` keeps MiniGrid's own ``gen_obs``."""
    check: bool = False
    """Compute both paths at every observation and raise at the first difference."""

    def apply(self, env: MiniGridEnv) -> MiniGridEnv:
        """``env`` set up for this path (the unwrapped MiniGrid env, changed in place)."""
        return accelerate(env, check=True) if self.check else accelerate(env) if self.fast else env


FAST_OBSERVATIONS = ObservationPath()
"""The default path: the exact fast observations."""


def accelerate(env, check: bool = False):
    """Make ``env`` compute observations through the fast path; returns ``env``.

    ``env`` is a MiniGrid env or a wrapper of one (its ``unwrapped`` env is changed). With
    ``check=True`` every observation is computed both ways and compared; the first
    difference raises :class:`ObservationMismatch` naming the env, the step and the cell.
    Calling it again is harmless (``check`` takes the latest value).
    """
    base = env.unwrapped
    if not isinstance(base, MiniGridEnv):
        raise TypeError(f"accelerate() needs a MiniGrid env, got {type(base).__name__}")
    view = base.agent_view_size
    if not isinstance(view, int) or view < 3 or view % 2 == 0:
        raise ValueError(f"accelerate() supports odd agent_view_size >= 3, got {view!r}")
    installed = getattr(base.__dict__.get("gen_obs"), "__self__", None)
    if isinstance(installed, _FastObservation):
        installed.check = check
        return env
    reason = unsupported_reason(base)
    if reason:
        _warn_once(f"{type(base).__name__}: {reason}; keeping MiniGrid's own gen_obs")
        return env
    base.__dict__["gen_obs"] = _FastObservation(base, check).gen_obs  # an instance attribute over the class's method
    return env


def is_accelerated(env) -> bool:
    """Whether ``env`` computes its observations through the fast path."""
    bound = env.unwrapped.__dict__.get("gen_obs")
    return isinstance(getattr(bound, "__self__", None), _FastObservation)


def unsupported_reason(env: MiniGridEnv) -> str | None:
    """Why the fast path cannot stand in for ``env``'s observation code, or ``None``."""
    version = tuple(int(part) for part in minigrid.__version__.split(".")[:2] if part.isdigit())
    if version not in VERIFIED_MINIGRID:
        verified = ", ".join(f"{a}.{b}.x" for a, b in VERIFIED_MINIGRID)
        return f"minigrid {minigrid.__version__} is not a verified version ({verified})"
    for name in _OBSERVATION_METHODS:
        if getattr(type(env), name) is not getattr(MiniGridEnv, name):
            return f"the env class overrides {name}"
    return None


def visible_cells(see_behind: np.ndarray) -> np.ndarray:
    """Which cells of a ``[V, V]`` (x, y) view the agent at ``(V // 2, V - 1)`` sees.

    MiniGrid's rule (``Grid.process_vis``), row by row from the agent's row up: a row's seen
    cells spread right, then left, through cells one can see behind. In the row above, a cell
    one can see behind shows its own column and the next one each sweep passes on to: seen by
    the rightward sweep at ``x < V - 1``, columns ``x`` and ``x + 1``; seen at ``x >= 1``
    (after both sweeps), ``x - 1`` and ``x``. So a column-0 cell that only the leftward sweep
    reached shows nothing above it (that sweep stops at column 1).
    """
    size = see_behind.shape[0]
    mask = np.zeros((size, size), dtype=bool)
    seeds = [False] * size
    seeds[size // 2] = True
    for y in range(size - 1, -1, -1):
        clear = [bool(c) for c in see_behind[:, y]]
        rightward = list(seeds)
        for x in range(size - 1):
            if rightward[x] and clear[x]:
                rightward[x + 1] = True
        both = list(rightward)
        for x in range(size - 1, 0, -1):
            if both[x] and clear[x]:
                both[x - 1] = True
        mask[:, y] = both
        above = [False] * size
        for x in range(size - 1):
            if rightward[x] and clear[x]:
                above[x] = above[x + 1] = True
        for x in range(1, size):
            if both[x] and clear[x]:
                above[x] = above[x - 1] = True
        seeds = above
    return mask


def _hidden(see_behind: bytes, view: int) -> np.ndarray:
    """The cells ``visible_cells`` leaves unseen, memoised on the ``see_behind`` pattern's bytes."""
    key = (view, see_behind)
    found = _hidden_memo.get(key)
    if found is None:
        if len(_hidden_memo) >= _HIDDEN_MEMO_LIMIT:
            _hidden_memo.clear()
        pattern = np.frombuffer(see_behind, dtype=np.uint8).reshape(view, view)
        found = ~visible_cells(pattern)
        _hidden_memo[key] = found
    return found


def _rotate_left(a: np.ndarray) -> np.ndarray:
    """``Grid.rotate_left`` on a square ``[x, y]`` array: ``new[x, y] = old[V - 1 - y, x]``."""
    return a[::-1].T


def view_offsets(view: int, row_stride: int) -> tuple[np.ndarray, ...]:
    """Per direction, the ``[V, V]`` (x, y) view's cells as flat offsets from the agent's cell.

    Reproduces ``get_view_exts``, ``Grid.slice`` and ``direction + 1`` ``rotate_left`` calls
    for a row-major array whose rows are ``row_stride`` cells apart.
    """
    i, j = np.meshgrid(np.arange(view), np.arange(view), indexing="ij")
    # Top-left corner of the slice relative to the agent, per direction (get_view_exts).
    corners = ((0, -(view // 2)), (-(view // 2), 0), (-view + 1, -(view // 2)), (-(view // 2), -view + 1))
    tables = []
    for direction, (dx, dy) in enumerate(corners):
        offsets = (j + dy) * row_stride + (i + dx)
        for _ in range(direction + 1):
            offsets = _rotate_left(offsets)
        tables.append(np.ascontiguousarray(offsets))
    return tuple(tables)


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(f"warning: fast observations off: {message}", file=sys.stderr)


def _encode(obj) -> tuple[tuple[int, int, int], int]:
    """``obj``'s code and whether one sees behind it."""
    return obj.encode(), 1 if obj.see_behind() else 0


_static_codes: dict[tuple[type, str], tuple[tuple[int, int, int], int]] = {}


def _encode_static(obj) -> tuple[tuple[int, int, int], int]:
    key = (type(obj), obj.color)
    found = _static_codes.get(key)
    if found is None:
        found = _static_codes[key] = _encode(obj)
    return found


class _Layout:
    """Index tables of a padded ``width x height`` grid seen through a ``view x view`` window.

    Cells are numbered row-major over the padded grid; three slots follow them: ``unseen``
    (all zeros), ``empty`` and ``carried`` (what the agent carries), so that the image is one
    gather of codes once hidden cells and the agent's cell point at those slots.
    """

    def __init__(self, width: int, height: int, view: int) -> None:
        self.pad = view - 1
        self.stride = width + 2 * self.pad
        padded = (height + 2 * self.pad) * self.stride
        xs, ys = np.meshgrid(np.arange(width), np.arange(height))  # row-major, like Grid.grid
        self.flat_of_cell = ((ys + self.pad) * self.stride + xs + self.pad).ravel()
        self.unseen, self.empty, self.carried = padded, padded + 1, padded + 2
        # An empty grid inside a border of out-of-grid walls: the start of every rebuild.
        self.codes = np.empty((padded + 3, 3), dtype=np.uint8)
        self.codes[:] = _OUTSIDE
        self.codes[self.flat_of_cell] = _EMPTY
        self.codes[[self.unseen, self.empty, self.carried]] = [(0, 0, 0), _EMPTY, _EMPTY]
        self.see_behind = np.zeros(padded, dtype=np.uint8)
        self.see_behind[self.flat_of_cell] = 1
        self.offsets = view_offsets(view, self.stride)


_layouts: dict[tuple[int, int, int], _Layout] = {}


def _layout(width: int, height: int, view: int) -> _Layout:
    key = (width, height, view)
    if key not in _layouts:
        _layouts[key] = _Layout(width, height, view)
    return _layouts[key]


class _FastObservation:
    """The encoded, padded grid of one env and the ``gen_obs`` that reads it."""

    def __init__(self, env: MiniGridEnv, check: bool) -> None:
        self.env = env
        self.check = check
        self.grid: Grid | None = None  # the env.grid the arrays describe

    # --- keeping the encoded grid in sync ----------------------------------------------
    def _rebuild(self, grid: Grid) -> None:
        view = self.view = self.env.agent_view_size
        self.width, self.height = grid.width, grid.height
        self.layout = layout = _layout(grid.width, grid.height, view)
        self.origin = layout.pad * layout.stride + layout.pad  # flat index of cell (0, 0)
        self.agent_cell = (view // 2, view - 1)
        self.codes = layout.codes.copy()
        self.codes_as_cells = self.codes.view(np.dtype("V3")).ravel()  # one item per cell: 1-D gathers
        self.see_behind = layout.see_behind.copy()
        self.carried_code = _EMPTY
        self.volatile: dict[int, tuple[object, tuple]] = {}  # cell -> (object, its last encoding)
        self.grid = grid
        cells = grid.grid
        self._encode_cells(cells, [k for k, obj in enumerate(cells) if obj is not None])
        self.cells = list(cells)

    def _encode_cells(self, cells: list, indices: list[int]) -> None:
        encoded = []
        for k in indices:
            obj = cells[k]
            if obj is None:
                encoded.append((_EMPTY, 1))
            elif type(obj) in _STATIC_CLASSES:
                encoded.append(_encode_static(obj))
            else:
                encoded.append(_encode(obj))
                self.volatile[k] = (obj, encoded[-1])
        if indices:
            flat = self.layout.flat_of_cell[indices]
            self.codes[flat] = [code for code, _ in encoded]
            self.see_behind[flat] = [see for _, see in encoded]

    def _sync(self, cells: list) -> None:
        changed = [k for k, (a, b) in enumerate(zip(cells, self.cells, strict=True)) if a is not b]
        for k in changed:
            self.volatile.pop(k, None)
        self._encode_cells(cells, changed)
        self.cells = list(cells)

    def _refresh_volatile(self) -> None:
        for k, (obj, last) in self.volatile.items():
            now = _encode(obj)
            if now != last:
                flat = self.layout.flat_of_cell[k]
                self.codes[flat], self.see_behind[flat] = now
                self.volatile[k] = (obj, now)

    # --- the observation --------------------------------------------------------------
    def fast_image(self) -> np.ndarray | None:
        """The ``image`` MiniGrid would return, or ``None`` where the fast path does not apply."""
        env = self.env
        grid = env.grid
        if grid is not self.grid or env.step_count == 0 or env.agent_view_size != self.view:
            if type(grid) is not Grid:
                _warn_once(f"{type(env).__name__}: grid class {type(grid).__name__} is not minigrid's Grid; "
                           "keeping MiniGrid's own gen_obs for it")
                return None
            self._rebuild(grid)
        elif grid.grid != self.cells:
            if len(grid.grid) != len(self.cells):
                self._rebuild(grid)
            else:
                self._sync(grid.grid)
        if self.volatile:
            self._refresh_volatile()
        x, y = env.agent_pos
        direction = env.agent_dir
        if not (0 <= x < self.width and 0 <= y < self.height and direction in (0, 1, 2, 3)):
            return None
        layout = self.layout
        window = layout.offsets[direction] + (self.origin + y * layout.stride + x)
        if not env.see_through_walls:
            np.putmask(window, _hidden(self.see_behind[window].tobytes(), self.view), layout.unseen)
        carrying = env.carrying
        if carrying:
            code = carrying.encode()
            if code != self.carried_code:
                self.codes[layout.carried] = self.carried_code = code
            window[self.agent_cell] = layout.carried
        else:
            window[self.agent_cell] = layout.empty
        return self.codes_as_cells[window].view(np.uint8).reshape(self.view, self.view, 3)

    def gen_obs(self) -> dict:
        env = self.env
        image = self.fast_image()
        if image is None:
            return MiniGridEnv.gen_obs(env)
        if self.check:
            self._compare(image, MiniGridEnv.gen_obs(env)["image"])
        return {"image": image, "direction": env.agent_dir, "mission": env.mission}

    def _compare(self, fast: np.ndarray, reference: np.ndarray) -> None:
        env = self.env
        name = env.spec.id if env.spec is not None else type(env).__name__
        where = f"{name} at step {env.step_count} (agent at {tuple(env.agent_pos)}, direction {env.agent_dir})"
        if fast.dtype != reference.dtype or fast.shape != reference.shape:
            raise ObservationMismatch(
                f"fast observation differs from MiniGrid's on {where}: {fast.dtype}{fast.shape} "
                f"vs {reference.dtype}{reference.shape}")
        if not np.array_equal(fast, reference):
            cell = tuple(int(c) for c in np.argwhere((fast != reference).any(axis=2))[0])
            raise ObservationMismatch(
                f"fast observation differs from MiniGrid's on {where}: view cell {cell} is "
                f"{tuple(fast[cell].tolist())}, MiniGrid has {tuple(reference[cell].tolist())}")

"""Actor and critic networks: MTPPO, Mixture of Experts, MOORE and single-task PPO.

Every network maps ``obs`` (uint8 or float, shape ``[B, 3, 7, 7]``, MiniGrid's integer
codes, channels first, not rescaled) and ``task`` (int64 ``[B]``, the task index) to
``[B, n_out]``: 7 logits for an actor, 1 value for a critic. Actor and critic are separate
networks, each with its own trunk (PROTOCOL.md, "Networks").

* ``mtppo`` / ``single``: one conv trunk (ReLU, ReLU, Tanh) shared by all tasks, then the
  sample's own task head ``Linear(1024, 128) Tanh Linear(128, n_out)``.
* ``moe``: k conv experts without the final Tanh; a task encoder ``Linear(T, k, bias=False)``
  on the one-hot task id gives k mixing weights (no softmax); ``tanh(sum_j w_j e_j)`` feeds
  the task head.
* ``moore``: as ``moe``, but the k expert outputs of each sample are orthonormalised by
  Gram-Schmidt before mixing (from 32 samples on, computed through each sample's k x k Gram
  matrix: :func:`orthonormal_mixture`).

``forward(..., record=acts)`` fills ``acts`` with the post-activation outputs of every
hidden layer (names below) for the plasticity metrics; ``features`` returns the shared
feature extractor's output (the input of the task heads).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

OBS_SHAPE = (3, 7, 7)
N_ACTIONS = 7
TRUNK_CHANNELS = (16, 32, 64)
"""Output channels of the conv trunk's three layers (paper)."""
TRUNK_POSITIONS = 4 * 4
"""Spatial positions of the last conv layer on a 7x7 view (three 2x2 convolutions, no padding)."""
TRUNK_FEATURES = TRUNK_CHANNELS[-1] * TRUNK_POSITIONS

GROUPED_EXPERTS_MAX_BATCH = 1024
"""Up to this many samples, gradient-free forward passes run the k experts as one grouped trunk."""

GRAM_SCHMIDT_EPS = 1e-6
"""Residuals with a norm at or below this are treated as zero vectors (output zero, not NaN)."""

GRAM_EXACT_BELOW = 0.3
"""Residual-to-norm ratio under which :func:`orthonormal_mixture` redoes a sample's Gram matrix in float64."""

SMALL_BATCH = 16
"""Below this many samples a CPU forward pass runs faster without oneDNN (see :func:`onednn`)."""

FROZEN_GEMM_MIN_ROWS = 16
"""From this many rows, a frozen :class:`HeadLinear` multiplies by its stored ``W^T`` (below,
MKL's products for either layout run alike and ``F.linear`` takes another path)."""

ORTHONORMAL_MIXTURE_MIN_BATCH = 32
"""From this many samples MOORE mixes through the Gram matrix (:func:`orthonormal_mixture`);
below, forming the basis takes fewer operations, which is what counts for a handful of samples."""


class ConvTrunk(nn.Module):
    """Conv2d(3,c1,2) ReLU Conv2d(c1,c2,2) ReLU Conv2d(c2,c3,2) [Tanh], flattened to ``c3 * 16``.

    ``channels`` = ``(c1, c2, c3)``: the paper's ``(16, 32, 64)`` by default (1024 features).
    """

    def __init__(self, final_tanh: bool = True, channels: tuple[int, int, int] = TRUNK_CHANNELS) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.conv1 = nn.Conv2d(3, c1, 2)
        self.conv2 = nn.Conv2d(c1, c2, 2)
        self.conv3 = nn.Conv2d(c2, c3, 2)
        self.final_tanh = final_tanh

    def forward(self, x: torch.Tensor, record: dict | None = None, prefix: str = "trunk") -> torch.Tensor:
        h1 = F.relu(self.conv1(x))
        h2 = F.relu(self.conv2(h1))
        h3 = self.conv3(h2)
        if self.final_tanh:
            h3 = torch.tanh(h3)
        if record is not None:
            record[f"{prefix}.conv1"] = h1
            record[f"{prefix}.conv2"] = h2
            record[f"{prefix}.conv3"] = h3
        return h3.flatten(1)


@contextlib.contextmanager
def onednn(enabled: bool):
    """Switch oneDNN (mkldnn) convolutions on or off for a block, restoring the setting."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


class HeadLinear(nn.Linear):
    """A task head's ``Linear(1024, hidden)``, with a faster product while its weights are frozen.

    ``F.linear`` hands MKL ``x @ W^T`` with ``W`` stored ``[out, in]``; at 16-75 rows this
    product ran 2.4-5.7x slower on this CPU than the same product with ``W^T`` stored
    ``[in, out]``, and gave the same bits (``bench/bench_networks.py`` measures both).
    Transposing ``W`` costs about as much as it saves, so the stored copy is made once per
    block in which the weights cannot change (:func:`frozen_weights`: an evaluation) and
    only used there, without autograd. Everywhere else this is ``nn.Linear``: the same
    parameters, state dict and module hooks (the Fisher metric's).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.frozen_weight_t: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight_t = self.frozen_weight_t
        if weight_t is None or x.dim() != 2 or x.shape[0] < FROZEN_GEMM_MIN_ROWS or torch.is_grad_enabled():
            return F.linear(x, self.weight, self.bias)
        if self.bias is None:
            return x @ weight_t
        return torch.addmm(self.bias, x, weight_t)


@contextlib.contextmanager
def frozen_weights(network: nn.Module):
    """A block in which ``network``'s weights do not change: its :class:`HeadLinear` layers
    multiply by a stored ``W^T`` (made here, dropped on exit).

    Only for code that neither trains nor edits weights (treatments edit them in place,
    also through ``.data``, which no version counter sees): evaluation.
    """
    layers = [m for m in network.modules() if isinstance(m, HeadLinear)]
    for layer in layers:
        layer.frozen_weight_t = layer.weight.detach().t().contiguous()
    try:
        yield network
    finally:
        for layer in layers:
            layer.frozen_weight_t = None


class TaskHead(nn.Module):
    """Linear(in, hidden) Tanh Linear(hidden, n_out): one per task."""

    def __init__(self, in_features: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.hidden = HeadLinear(in_features, hidden)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor, record: dict | None = None, prefix: str = "") -> torch.Tensor:
        h = torch.tanh(self.hidden(x))
        if record is not None:
            record[f"{prefix}.hidden"] = h
        return self.out(h)


def experts_as_one_trunk(experts: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """All k expert trunks of a MoE/MOORE network in three convolutions: ``[B, k, 1024]``.

    ``conv1`` with the k experts' filters stacked, then ``conv2`` and ``conv3`` grouped by
    expert: the same values as running the experts one by one (bit for bit from 2 samples up
    in the tests; oneDNN on a single sample may round differently). Three calls instead of
    3k is what matters at inference batch sizes (collection, evaluation), where the per-call
    cost of a small convolution dominates. Training keeps the per-expert path (the grouped
    backward is no faster), and so do gradient-free batches over
    :data:`GROUPED_EXPERTS_MAX_BATCH` (at 6000 samples grouped convolutions are slower).
    Weights are re-stacked on every call: masks and optimizer steps change them in place.
    """
    k = len(experts)

    def stacked(layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        convs = [getattr(expert, layer) for expert in experts]
        return torch.cat([c.weight for c in convs]), torch.cat([c.bias for c in convs])

    h = F.relu(F.conv2d(x, *stacked("conv1")))
    h = F.relu(F.conv2d(h, *stacked("conv2"), groups=k))
    h = F.conv2d(h, *stacked("conv3"), groups=k)
    return h.reshape(x.shape[0], k, -1)


def gram_schmidt(vectors: torch.Tensor, eps: float = GRAM_SCHMIDT_EPS) -> torch.Tensor:
    """Orthonormalise ``vectors[b, 0..k-1, :]`` in order, for every sample ``b``.

    Modified Gram-Schmidt, differentiable. Unlike MOORE's layer, a vector whose residual is
    (near) zero, e.g. an expert fully pruned or dead on this input, becomes the zero vector
    instead of NaN; the other outputs stay orthonormal. Shape ``[B, k, D] -> [B, k, D]``.
    """
    basis: list[torch.Tensor] = []
    for w in vectors.unbind(1):  # unbind, not indexing: one gradient buffer, not k zero-filled ones
        for b in basis:
            # Fused dot product and update: a third of the [B, D] passes of w - (w.b) b.
            w = torch.addcmul(w, torch.linalg.vecdot(w, b).unsqueeze(-1), b, value=-1.0)
        sq_norm = torch.linalg.vecdot(w, w).unsqueeze(-1)
        # where() on both the denominator and the scale keeps gradients finite at zero.
        nonzero = sq_norm > eps * eps
        inv_norm = torch.rsqrt(torch.where(nonzero, sq_norm, torch.ones_like(sq_norm)))
        basis.append(w * torch.where(nonzero, inv_norm, torch.zeros_like(inv_norm)))
    return torch.stack(basis, dim=1)


def orthonormal_mixture(vectors: torch.Tensor, weights: torch.Tensor, eps: float = GRAM_SCHMIDT_EPS) -> torch.Tensor:
    """``sum_i weights[b, i] * gram_schmidt(vectors)[b, i]`` without forming the basis.

    MOORE only uses this mixture of the orthonormalised experts, and every basis vector is
    a combination of the raw ones, ``u_i = sum_j C[b, i, j] v_j``. So the same modified
    Gram-Schmidt (same order, same zero-residual rule) runs on each sample's ``k x k`` Gram
    matrix ``V V^T`` instead of on the ``[B, k, D]`` vectors, and the mixture is one
    weighted sum of the raw vectors: two batched matrix products instead of ~k^2 passes
    over ``[B, D]`` and their backward (3-4x faster for k=4 experts at PPO minibatch size).

    Precision: a Gram matrix squares the condition number. It is accumulated in the
    vectors' dtype; a sample whose experts are nearly dependent (some residual below
    :data:`GRAM_EXACT_BELOW` of its vector's norm, rare in practice: the trained MOORE MT3
    experts measured had every ratio above 0.9) gets its Gram matrix again in float64, where a residual is resolved at
    least as finely as float32 Gram-Schmidt on the vectors resolves it.
    Shapes ``[B, k, D]``, ``[B, k]`` -> ``[B, D]``.
    """
    gram = torch.bmm(vectors, vectors.transpose(1, 2)).double()  # [B, k, k]
    rows, sq_norms = _gram_schmidt_coefficients(gram, eps)
    if vectors.dtype != torch.float64:  # float64 vectors already gave an exact-enough Gram matrix
        diagonal = gram.diagonal(dim1=1, dim2=2)
        nearly_dependent = ((sq_norms < GRAM_EXACT_BELOW**2 * diagonal) & (diagonal > eps * eps)).any(-1)
        if bool(nearly_dependent.any()):
            index = nearly_dependent.nonzero().squeeze(1)
            v64 = vectors[index].double()
            gram = gram.index_put((index,), torch.bmm(v64, v64.transpose(1, 2)))
            rows, _ = _gram_schmidt_coefficients(gram, eps)
    coefficients = torch.bmm(weights.double().unsqueeze(1), rows)  # [B, 1, k]
    return torch.bmm(coefficients.to(vectors.dtype), vectors).squeeze(1)


def _gram_schmidt_coefficients(gram: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Modified Gram-Schmidt in coefficient space: ``C [B, k, k]`` with ``u_i = sum_j C_ij v_j``,
    and each residual's squared norm ``[B, k]``, from the Gram matrices ``[B, k, k]``."""
    batch, k, _ = gram.shape

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # <sum a_j v_j, sum b_j v_j>
        return (torch.bmm(a.unsqueeze(1), gram).squeeze(1) * b).sum(-1, keepdim=True)

    eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
    rows: list[torch.Tensor] = []
    sq_norms: list[torch.Tensor] = []
    for i in range(k):
        c = eye[i].expand(batch, k)
        for row in rows:
            c = c - dot(c, row) * row
        sq_norm = dot(c, c)
        nonzero = sq_norm > eps * eps
        inv_norm = torch.rsqrt(torch.where(nonzero, sq_norm, torch.ones_like(sq_norm)))
        rows.append(c * torch.where(nonzero, inv_norm, torch.zeros_like(inv_norm)))
        sq_norms.append(sq_norm)
    return torch.stack(rows, dim=1), torch.cat(sq_norms, dim=1)


class MultiTaskNetwork(nn.Module):
    """One actor or critic of any architecture; see the module docstring.

    Hidden layers recorded by ``forward(record=...)`` (post-activation):

    * ``mtppo``/``single``: ``trunk.conv1``, ``trunk.conv2`` (ReLU), ``trunk.conv3`` (Tanh),
      ``heads.<t>.hidden`` (Tanh, only the samples of task ``t``).
    * ``moe``/``moore``: ``experts.<j>.conv1``, ``experts.<j>.conv2`` (ReLU),
      ``experts.<j>.conv3`` (no activation: experts are linear before mixing),
      ``features`` (the Tanh of the mixed features, ``[B, 1024]``), ``heads.<t>.hidden``.
    """

    def __init__(self, arch: str, n_tasks: int, n_out: int, n_experts: int = 1, hidden: int = 128,
                 channels: tuple[int, int, int] = TRUNK_CHANNELS) -> None:
        super().__init__()
        if arch not in MIXINGS:
            raise ValueError(f"unknown mixing {arch!r}; one of {', '.join(MIXINGS)}")
        self.arch = arch
        self.n_tasks = n_tasks
        self.n_out = n_out
        self.channels = tuple(channels)
        self.n_features = self.channels[-1] * TRUNK_POSITIONS
        self.n_experts = n_experts if arch in ("moe", "moore") else 0
        if self.n_experts:
            # Each expert gets its own independent initialisation, as in MOORE.
            self.experts = nn.ModuleList(ConvTrunk(final_tanh=False, channels=self.channels) for _ in range(n_experts))
            self.task_encoder = nn.Linear(n_tasks, n_experts, bias=False)
        else:
            self.trunk = ConvTrunk(final_tanh=True, channels=self.channels)
        self.heads = nn.ModuleList(TaskHead(self.n_features, hidden, n_out) for _ in range(n_tasks))

    def features(self, obs: torch.Tensor, task: torch.Tensor, record: dict | None = None) -> torch.Tensor:
        """The shared feature extractor's output ``[B, 1024]`` (input of the task heads)."""
        x = obs.float()
        if not self.n_experts:
            return self.trunk(x, record, "trunk")
        if (record is None and not torch.is_grad_enabled() and self.n_experts > 1
                and x.shape[0] <= GROUPED_EXPERTS_MAX_BATCH):
            expert_out = experts_as_one_trunk(self.experts, x)
        else:
            expert_out = torch.stack(
                [expert(x, record, f"experts.{j}") for j, expert in enumerate(self.experts)], dim=1
            )  # [B, k, 1024]
        weights = self.task_encoder(F.one_hot(task, self.n_tasks).to(expert_out.dtype))  # [B, k]
        if self.arch == "moore" and x.shape[0] >= ORTHONORMAL_MIXTURE_MIN_BATCH:
            mixed = orthonormal_mixture(expert_out, weights)
        else:
            if self.arch == "moore":
                expert_out = gram_schmidt(expert_out)
            mixed = torch.einsum("bk,bkd->bd", weights, expert_out)
        mixed = torch.tanh(mixed)
        if record is not None:
            record["features"] = mixed
        return mixed

    def forward(self, obs: torch.Tensor, task: torch.Tensor, record: dict | None = None) -> torch.Tensor:
        feats = self.features(obs, task, record)
        if self.n_tasks == 1:
            return self.heads[0](feats, record, "heads.0")
        return route_to_heads(self.heads, feats, task, record)

    def output_layers(self) -> list[nn.Linear]:
        """The task heads' output layers (never recycled by ReDo; the target of Reset)."""
        return [head.out for head in self.heads]

    # --- structure maps for the treatments and plasticity metrics (no effect on forward) ---
    def weight_layers(self) -> dict[str, nn.Module]:
        """Every ``Conv2d`` and ``Linear`` by module name, in definition order.

        Their ``weight`` tensors are the prunable ones (``<name>.weight``; biases never are);
        the MoE/MOORE ``task_encoder`` is among them, callers decide whether to prune it.
        """
        return {name: module for name, module in self.named_modules()
                if isinstance(module, (nn.Conv2d, nn.Linear))}

    def neuron_layers(self) -> list["NeuronLayer"]:
        """The hidden layers whose units count as neurons (dormancy, ReDo), in forward order.

        ``mtppo``/``single``: ``trunk.conv1``, ``trunk.conv2`` (ReLU), ``trunk.conv3`` (Tanh,
        64 channels feeding every head through the flatten) and ``heads.<t>.hidden`` (Tanh).
        ``moe``/``moore``: ``experts.<j>.conv1``/``conv2`` (ReLU), then ``features``: the Tanh
        of the mixed expert outputs, seen as 64 channels of 4x4 positions like ``trunk.conv3``
        (the experts' ``conv3`` has no activation of its own and its outgoing connections are
        shared by all experts through the mixture, so it is not a neuron layer, and
        ``features`` has no weights of its own, so ReDo cannot recycle it), and the heads.
        The heads' output layers are never neuron layers.
        """
        c1, c2, c3 = self.channels
        positions = TRUNK_POSITIONS  # a conv3 channel feeds 16 flattened head inputs
        head_inputs = tuple((f"heads.{t}.hidden", positions) for t in range(self.n_tasks))
        layers: list[NeuronLayer] = []
        if self.n_experts:
            for j in range(self.n_experts):
                layers.append(NeuronLayer(f"experts.{j}.conv1", c1, (f"experts.{j}.conv1",),
                                          ((f"experts.{j}.conv2", 1),)))
                layers.append(NeuronLayer(f"experts.{j}.conv2", c2, (f"experts.{j}.conv2",),
                                          ((f"experts.{j}.conv3", 1),)))
            layers.append(NeuronLayer("features", c3, tuple(f"experts.{j}.conv3" for j in range(self.n_experts)),
                                      head_inputs, recyclable=False))
        else:
            layers.append(NeuronLayer("trunk.conv1", c1, ("trunk.conv1",), (("trunk.conv2", 1),)))
            layers.append(NeuronLayer("trunk.conv2", c2, ("trunk.conv2",), (("trunk.conv3", 1),)))
            layers.append(NeuronLayer("trunk.conv3", c3, ("trunk.conv3",), head_inputs))
        for t, head in enumerate(self.heads):
            layers.append(NeuronLayer(f"heads.{t}.hidden", head.hidden.out_features, (f"heads.{t}.hidden",),
                                      ((f"heads.{t}.out", 1),), task=t))
        return layers

    def features_from_record(self, record: dict) -> torch.Tensor:
        """The output of :meth:`features` ``[B, 1024]`` out of a ``forward(record=...)`` dict."""
        return (record["features"] if self.n_experts else record["trunk.conv3"]).flatten(1)


def route_to_heads(heads: nn.ModuleList, feats: torch.Tensor, task: torch.Tensor,
                   record: dict | None = None) -> torch.Tensor:
    """Each sample through its own task's head: ``[B, F]`` features -> ``[B, n_out]``.

    Samples are grouped by task with one split, and the heads' outputs joined with one cat:
    gather/scatter indexing per head would cost a zero-filled ``[B, F]`` gradient buffer per
    head in backward. Batches already sorted by task (collection, evaluation and the PPO
    minibatches all are) skip the sort and the unsort.
    """
    in_order = bool((task[1:] >= task[:-1]).all()) if task.numel() > 1 else True
    order = None if in_order else torch.argsort(task, stable=True)
    sorted_task = task if order is None else task[order]
    sorted_feats = feats if order is None else feats[order]
    counts = torch.bincount(sorted_task, minlength=len(heads)).tolist()
    outputs = [heads[t](chunk, record, f"heads.{t}")
               for t, chunk in enumerate(sorted_feats.split(counts)) if counts[t]]
    if not outputs:
        return feats.new_empty(0, heads[0].out.out_features)
    out = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
    if order is None:
        return out
    return out.new_empty(out.shape).index_copy_(0, order, out)


@dataclass(frozen=True)
class NeuronLayer:
    """One hidden layer of neurons: where its values are recorded and which weights touch it.

    ``forward(record=r)`` stores its post-activation values as ``r[name]``, shaped
    ``[B, n_neurons, ...]`` or ``[B, n_neurons * positions]`` (channel-major flatten); a
    neuron's score averages ``|value|`` over the batch and over any spatial positions.
    """

    name: str
    """Key in the ``record`` dict of :meth:`MultiTaskNetwork.forward`."""
    n_neurons: int
    """Output channels (conv) or units (linear)."""
    producers: tuple[str, ...]
    """Modules whose output channel/row ``i`` feeds neuron ``i`` (its incoming weights)."""
    consumers: tuple[tuple[str, int], ...]
    """``(module, positions)``: neuron ``i`` feeds input channels ``i`` (conv consumer) or
    input columns ``i*positions .. (i+1)*positions - 1`` (linear consumer after a flatten)."""
    task: int | None = None
    """Only this task's samples reach the layer (a task head); ``None``: every sample."""
    recyclable: bool = True
    """Whether ReDo may re-initialise its neurons (it needs a single producer of its own)."""


MIXINGS = ("mtppo", "single", "moe", "moore")
"""How :class:`MultiTaskNetwork` feeds its heads: one shared trunk (``mtppo``, ``single``), a linear
mixture of expert trunks (``moe``) or an orthonormalised one (``moore``)."""


# Builders of the paper's architectures (registered in agents.architectures).
def build_mtppo(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> MultiTaskNetwork:
    return MultiTaskNetwork("mtppo", n_tasks, n_out, hidden=hidden)


def build_single(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> MultiTaskNetwork:
    return MultiTaskNetwork("single", n_tasks, n_out, hidden=hidden)


def build_moe(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> MultiTaskNetwork:
    return MultiTaskNetwork("moe", n_tasks, n_out, n_experts=n_experts, hidden=hidden)


def build_moore(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> MultiTaskNetwork:
    return MultiTaskNetwork("moore", n_tasks, n_out, n_experts=n_experts, hidden=hidden)


def build_network(arch: str, n_tasks: int, n_out: int, n_experts: int = 1, hidden: int = 128):
    """An actor (``n_out=7``) or critic (``n_out=1``) of the registered architecture ``arch``."""
    from agents.architectures import build_network as build_registered

    return build_registered(arch, n_tasks, n_out, n_experts=n_experts, hidden=hidden)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

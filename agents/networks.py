"""Actor and critic networks: MTPPO, Mixture of Experts, MOORE and single-task PPO.

Every network maps ``obs`` (uint8 or float, shape ``[B, 3, 7, 7]``, MiniGrid's integer
codes, channels first, not rescaled) and ``task`` (int64 ``[B]``, the task index) to
``[B, n_out]``: 7 logits for an actor, 1 value for a critic. Actor and critic are separate
networks, each with its own trunk (PROTOCOL.md, "Networks").

Every network is a :class:`MultiTaskNetwork`: shared features, then the sample's own task
head ``Linear(1024, 128) Tanh Linear(128, n_out)``. How the shared features are computed is
the network's *mixing*, one subclass each:

* :class:`SharedTrunkNetwork` (``mtppo``, ``single``): one conv trunk (ReLU, ReLU, Tanh)
  shared by all tasks;
* :class:`ExpertMixtureNetwork` (``moe``): k conv experts mixed with weights from the task id;
* :class:`OrthogonalMixtureNetwork` (``moore``): the k expert outputs of each sample are
  orthonormalised by Gram-Schmidt before mixing.

``forward(..., record=acts)`` fills ``acts`` with the post-activation outputs of every
hidden layer for the plasticity metrics; ``features`` returns the shared features (the
input of the task heads). The networks follow ``mtrl_plasticity.NetworkInterface``.

Some computations take another path at some batch sizes, each with the same values as
the plain one (the tests compare them) and each kept because ``bench/bench_networks.py``
shows it pays there: :data:`GROUPED_EXPERTS_MAX_BATCH`, :data:`GRAM_MIXTURE_MIN_BATCH`,
:data:`ONEDNN_MIN_BATCH` and :data:`FROZEN_PRODUCT_MIN_ROWS`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

import agents.architectures  # noqa: F401  (registers the paper's architectures, which build_network finds)
from mtrl_plasticity.architectures import NeuronLayer, architecture_spec

Record = dict[str, torch.Tensor]
"""What ``forward(..., record=r)`` fills: post-activation outputs by neuron layer name."""
WeightLayer = nn.Conv2d | nn.Linear
"""A layer with a prunable ``weight`` (:meth:`MultiTaskNetwork.weight_layers`)."""

OBS_SHAPE = (3, 7, 7)
N_ACTIONS = 7
TRUNK_CHANNELS = (16, 32, 64)
"""Output channels of the conv trunk's three layers (paper)."""
TRUNK_POSITIONS = 4 * 4
"""Spatial positions of the last conv layer on a 7x7 view (three 2x2 convolutions, no padding)."""

GROUPED_EXPERTS_MAX_BATCH = 128
"""Up to this many samples, gradient-free forward passes run the k experts as one grouped trunk
(the same values; grouped convolutions stop paying a little above this)."""

GRAM_SCHMIDT_EPS = 1e-6
"""Residuals with a norm at or below this are treated as zero vectors (output zero, not NaN)."""

GRAM_EXACT_BELOW = 0.3
"""Residual-to-norm ratio under which :func:`orthonormal_mixture` redoes a sample's Gram matrix in float64."""

ONEDNN_MIN_BATCH = 16
"""From this many samples a gradient-free CPU forward pass uses oneDNN's convolutions; below, the
trial's policy switches oneDNN off (:func:`onednn`), whose per-call set-up outweighs the work."""

FROZEN_PRODUCT_MIN_ROWS = 4
"""From this many rows, a frozen :class:`HeadLinear` multiplies by its stored ``W^T``: the same
values as ``F.linear`` from 4 rows on (fewer rows take a matrix-vector kernel that rounds otherwise)."""

GRAM_MIXTURE_MIN_BATCH = 32
"""From this many samples MOORE mixes through the Gram matrix (:func:`orthonormal_mixture`);
below, forming the basis takes fewer operations, which is what counts for a handful of samples.
The two round differently, so moving this changes MOORE's results in their last bits."""


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

    def forward(self, x: torch.Tensor, record: Record | None = None, prefix: str = "trunk") -> torch.Tensor:
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
def onednn(enabled: bool) -> Iterator[None]:
    """Switch oneDNN (mkldnn) convolutions on or off for a block, restoring the setting."""
    previous = torch.backends.mkldnn.enabled
    # torch.backends.mkldnn is a module whose settings are properties: they take a bool (its
    # flags() context would also set oneDNN's TF32 switch, which this block must not touch).
    torch.backends.mkldnn.enabled = enabled  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


class HeadLinear(nn.Linear):
    """A task head's ``Linear(1024, hidden)``, with a faster product while its weights are frozen.

    ``F.linear`` hands the BLAS ``x @ W^T`` with ``W`` stored ``[out, in]``; at evaluation
    row counts the same product with ``W^T`` stored ``[in, out]`` runs faster on MKL and gives
    the same values (``bench/bench_networks.py`` measures both; the tests compare them).
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
        if weight_t is None or x.dim() != 2 or x.shape[0] < FROZEN_PRODUCT_MIN_ROWS or torch.is_grad_enabled():
            return F.linear(x, self.weight, self.bias)
        if self.bias is None:
            return x @ weight_t
        return torch.addmm(self.bias, x, weight_t)


@contextlib.contextmanager
def frozen_weights(network: nn.Module) -> Iterator[nn.Module]:
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

    def forward(self, x: torch.Tensor, record: Record | None = None, prefix: str = "") -> torch.Tensor:
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
    :data:`GROUPED_EXPERTS_MAX_BATCH`, where grouped convolutions lose (``bench/bench_networks.py``).
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
    over ``[B, D]`` and their backward (``bench/bench_networks.py`` times both).

    Precision: a Gram matrix squares the condition number. It is accumulated in the
    vectors' dtype; a sample whose experts are nearly dependent (some residual below
    :data:`GRAM_EXACT_BELOW` of its vector's norm) gets its Gram matrix again in float64,
    where a residual is resolved at least as finely as float32 Gram-Schmidt on the vectors
    resolves it.
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
    """Shared features, then each sample's own task head: the frame every architecture here shares.

    A subclass is one *mixing*, a way of computing the shared features from observations: it
    builds its modules in ``__init__``, then calls :meth:`add_heads` (module creation order is
    initialisation order, so it is part of what a seed means), and defines :meth:`features`,
    :meth:`feature_layers` and :meth:`features_from_record`. :class:`SharedTrunkNetwork`
    (MTPPO, single-task), :class:`ExpertMixtureNetwork` (MoE) and
    :class:`OrthogonalMixtureNetwork` (MOORE) are the paper's; a new mixing is a new subclass,
    registered through a builder (``register_architecture``).

    ``forward(..., record=r)`` stores the post-activation output of every hidden layer in ``r``
    (the names of :meth:`neuron_layers`), ``heads.<t>.hidden`` holding only task ``t``'s samples.
    """

    def __init__(self, n_tasks: int, n_out: int, channels: tuple[int, int, int] = TRUNK_CHANNELS) -> None:
        super().__init__()
        self.n_tasks = n_tasks
        self.n_out = n_out
        self.channels = (channels[0], channels[1], channels[2])
        self.n_features = self.channels[-1] * TRUNK_POSITIONS

    def add_heads(self, hidden: int) -> None:
        """One :class:`TaskHead` per task on the ``n_features`` shared features (after the mixing's modules)."""
        self.heads = nn.ModuleList(TaskHead(self.n_features, hidden, self.n_out) for _ in range(self.n_tasks))

    # --- what a mixing defines --------------------------------------------------------------
    def features(self, obs: torch.Tensor, task: torch.Tensor, record: Record | None = None) -> torch.Tensor:
        """The shared features ``[B, n_features]`` (input of the task heads) of ``obs`` ``[B, 3, 7, 7]``."""
        raise NotImplementedError

    def feature_layers(self, head_inputs: tuple[tuple[str, int], ...]) -> list[NeuronLayer]:
        """The mixing's neuron layers in forward order; ``head_inputs`` are the consumers of its last one."""
        raise NotImplementedError

    def features_from_record(self, record: Record) -> torch.Tensor:
        """The output of :meth:`features` ``[B, n_features]`` out of a ``forward(record=...)`` dict."""
        raise NotImplementedError

    # --- the frame --------------------------------------------------------------------------
    def forward(self, obs: torch.Tensor, task: torch.Tensor, record: Record | None = None) -> torch.Tensor:
        feats = self.features(obs, task, record)
        if self.n_tasks == 1:
            return self.heads[0](feats, record, "heads.0")
        return route_to_heads(self.heads, feats, task, record)

    def task_heads(self) -> list[TaskHead]:
        """The heads, one per task, in task order."""
        return cast(list[TaskHead], list(self.heads))

    def output_layers(self) -> list[nn.Linear]:
        """The task heads' output layers (never recycled by ReDo; the target of Reset)."""
        return [head.out for head in self.task_heads()]

    # --- structure maps for the treatments and plasticity metrics (no effect on forward) ---
    def weight_layers(self) -> dict[str, WeightLayer]:
        """Every ``Conv2d`` and ``Linear`` by module name, in definition order.

        Their ``weight`` tensors are the prunable ones (``<name>.weight``; biases never are);
        the MoE/MOORE ``task_encoder`` is among them, callers decide whether to prune it.
        """
        return {name: module for name, module in self.named_modules()
                if isinstance(module, (nn.Conv2d, nn.Linear))}

    def neuron_layers(self) -> list[NeuronLayer]:
        """The hidden layers whose units count as neurons (dormancy, ReDo), in forward order:
        the mixing's (:meth:`feature_layers`), then each head's ``heads.<t>.hidden`` (Tanh).
        The heads' output layers are never neuron layers."""
        positions = TRUNK_POSITIONS  # a channel of the last conv layer feeds 16 flattened head inputs
        head_inputs = tuple((f"heads.{t}.hidden", positions) for t in range(self.n_tasks))
        layers = self.feature_layers(head_inputs)
        for t, head in enumerate(self.task_heads()):
            layers.append(NeuronLayer(f"heads.{t}.hidden", head.hidden.out_features, (f"heads.{t}.hidden",),
                                      ((f"heads.{t}.out", 1),), task=t))
        return layers


class SharedTrunkNetwork(MultiTaskNetwork):
    """MTPPO and single-task PPO: one conv trunk (ReLU, ReLU, Tanh) shared by every task.

    Recorded layers: ``trunk.conv1``, ``trunk.conv2`` (ReLU), ``trunk.conv3`` (Tanh, its
    channels feeding every head through the flatten), then the heads.
    """

    def __init__(self, n_tasks: int, n_out: int, hidden: int = 128,
                 channels: tuple[int, int, int] = TRUNK_CHANNELS) -> None:
        super().__init__(n_tasks, n_out, channels)
        self.trunk = ConvTrunk(final_tanh=True, channels=self.channels)
        self.add_heads(hidden)

    def features(self, obs: torch.Tensor, task: torch.Tensor, record: Record | None = None) -> torch.Tensor:
        return self.trunk(obs.float(), record, "trunk")

    def feature_layers(self, head_inputs: tuple[tuple[str, int], ...]) -> list[NeuronLayer]:
        c1, c2, c3 = self.channels
        return [NeuronLayer("trunk.conv1", c1, ("trunk.conv1",), (("trunk.conv2", 1),)),
                NeuronLayer("trunk.conv2", c2, ("trunk.conv2",), (("trunk.conv3", 1),)),
                NeuronLayer("trunk.conv3", c3, ("trunk.conv3",), head_inputs)]

    def features_from_record(self, record: Record) -> torch.Tensor:
        return record["trunk.conv3"].flatten(1)


class ExpertMixtureNetwork(MultiTaskNetwork):
    """MoE: k conv experts without the final Tanh, mixed by weights from the task id.

    A task encoder ``Linear(T, k, bias=False)`` on the one-hot task id gives each sample k
    mixing weights (no softmax); ``tanh(sum_j w_j e_j)`` feeds the task head. Each expert gets
    its own independent initialisation, as in MOORE.

    Recorded layers: ``experts.<j>.conv1``, ``experts.<j>.conv2`` (ReLU), ``experts.<j>.conv3``
    (no activation: experts are linear before mixing) and ``features`` (the Tanh of the mixed
    features), then the heads. ``features`` counts as the neuron layer, seen as
    channels of 4x4 positions like a shared trunk's ``conv3``: the experts' ``conv3`` has no
    activation of its own and its outgoing connections are shared by all experts through the
    mixture, and ``features`` has no weights of its own, so ReDo cannot recycle it.
    """

    def __init__(self, n_tasks: int, n_out: int, n_experts: int, hidden: int = 128,
                 channels: tuple[int, int, int] = TRUNK_CHANNELS) -> None:
        super().__init__(n_tasks, n_out, channels)
        self.n_experts = n_experts
        self.experts = nn.ModuleList(ConvTrunk(final_tanh=False, channels=self.channels) for _ in range(n_experts))
        self.task_encoder = nn.Linear(n_tasks, n_experts, bias=False)
        self.add_heads(hidden)

    def expert_outputs(self, x: torch.Tensor, record: Record | None) -> torch.Tensor:
        """Every expert's output ``[B, k, n_features]``; gradient-free batches run them as one grouped trunk."""
        if (record is None and not torch.is_grad_enabled() and self.n_experts > 1
                and x.shape[0] <= GROUPED_EXPERTS_MAX_BATCH):
            return experts_as_one_trunk(self.experts, x)
        return torch.stack([expert(x, record, f"experts.{j}") for j, expert in enumerate(self.experts)], dim=1)

    def mix(self, vectors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``sum_j weights[b, j] * vectors[b, j]``: ``[B, k, D]``, ``[B, k]`` -> ``[B, D]``."""
        return torch.einsum("bk,bkd->bd", weights, vectors)

    def features(self, obs: torch.Tensor, task: torch.Tensor, record: Record | None = None) -> torch.Tensor:
        expert_out = self.expert_outputs(obs.float(), record)
        weights = self.task_encoder(F.one_hot(task, self.n_tasks).to(expert_out.dtype))  # [B, k]
        mixed = torch.tanh(self.mix(expert_out, weights))
        if record is not None:
            record["features"] = mixed
        return mixed

    def feature_layers(self, head_inputs: tuple[tuple[str, int], ...]) -> list[NeuronLayer]:
        c1, c2, c3 = self.channels
        layers = []
        for j in range(self.n_experts):
            layers.append(NeuronLayer(f"experts.{j}.conv1", c1, (f"experts.{j}.conv1",), ((f"experts.{j}.conv2", 1),)))
            layers.append(NeuronLayer(f"experts.{j}.conv2", c2, (f"experts.{j}.conv2",), ((f"experts.{j}.conv3", 1),)))
        layers.append(NeuronLayer("features", c3, tuple(f"experts.{j}.conv3" for j in range(self.n_experts)),
                                  head_inputs, recyclable=False))
        return layers

    def features_from_record(self, record: Record) -> torch.Tensor:
        return record["features"].flatten(1)


class OrthogonalMixtureNetwork(ExpertMixtureNetwork):
    """MOORE: as :class:`ExpertMixtureNetwork`, but each sample's k expert outputs are
    orthonormalised by Gram-Schmidt before mixing (:func:`gram_schmidt`; from
    :data:`GRAM_MIXTURE_MIN_BATCH` samples on, through each sample's k x k Gram matrix:
    :func:`orthonormal_mixture`, the same mixture)."""

    def mix(self, vectors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if vectors.shape[0] >= GRAM_MIXTURE_MIN_BATCH:
            return orthonormal_mixture(vectors, weights)
        return super().mix(gram_schmidt(vectors), weights)


def route_to_heads(heads: nn.ModuleList, feats: torch.Tensor, task: torch.Tensor,
                   record: Record | None = None) -> torch.Tensor:
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
        return feats.new_empty(0, cast(TaskHead, heads[0]).out.out_features)
    out = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
    if order is None:
        return out
    return out.new_empty(out.shape).index_copy_(0, order, out)


# Builders of the paper's architectures (registered by name in agents.architectures).
def build_mtppo(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> MultiTaskNetwork:
    return SharedTrunkNetwork(n_tasks, n_out, hidden=hidden)


def build_single(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> MultiTaskNetwork:
    return SharedTrunkNetwork(n_tasks, n_out, hidden=hidden)


def build_moe(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> MultiTaskNetwork:
    return ExpertMixtureNetwork(n_tasks, n_out, n_experts, hidden=hidden)


def build_moore(*, n_tasks: int, n_out: int, n_experts: int, hidden: int) -> MultiTaskNetwork:
    return OrthogonalMixtureNetwork(n_tasks, n_out, n_experts, hidden=hidden)


def build_network(arch: str, n_tasks: int, n_out: int, n_experts: int = 1, hidden: int = 128) -> MultiTaskNetwork:
    """An actor (``n_out=7``) or critic (``n_out=1``) of the registered architecture ``arch``.

    Typed as the paper's frame: a plugin's network need not subclass it, but it has the same
    methods (``mtrl_plasticity.NetworkInterface``, which ``mtrl run`` checks before a sweep starts).
    """
    spec = architecture_spec(arch)
    network = spec.builder()(n_tasks=n_tasks, n_out=n_out, n_experts=n_experts if spec.uses_experts else 0,
                             hidden=hidden)
    return cast(MultiTaskNetwork, network)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

"""Network shapes, parameter counts (PROTOCOL.md) and the safe Gram-Schmidt."""

import pytest
import torch

import agents.networks as networks
from agents.networks import (
    GRAM_MIXTURE_MIN_BATCH,
    ConvTrunk,
    build_network,
    count_parameters,
    experts_as_one_trunk,
    gram_schmidt,
    onednn,
    orthonormal_mixture,
    route_to_heads,
)


@pytest.mark.parametrize("n_tasks,expected", [(3, 406_853), (5, 671_059), (7, 935_265)])
def test_mtppo_actor_parameter_counts(n_tasks, expected):
    assert count_parameters(build_network("mtppo", n_tasks, 7)) == expected


def test_trunk_and_head_counts():
    assert count_parameters(ConvTrunk()) == 10_544
    actor = build_network("mtppo", 3, 7)
    assert count_parameters(actor.heads[0]) == 132_103


@pytest.mark.parametrize("arch", ["moe", "moore"])
def test_mixture_routes_tasks_through_k_experts(arch):
    torch.manual_seed(0)
    net = build_network(arch, n_tasks=5, n_out=7, n_experts=3)
    assert len(net.experts) == 3
    assert net.task_encoder.weight.shape == (3, 5) and net.task_encoder.bias is None
    # k trunks without the final Tanh + encoder + 5 heads.
    assert count_parameters(net) == 3 * 10_544 + 15 + 5 * 132_103
    obs = torch.randint(0, 11, (8, 3, 7, 7), dtype=torch.uint8)
    task = torch.zeros(8, dtype=torch.long)
    base = net.features(obs, task)
    # Task 0's features depend on expert j exactly through the encoder weight w[j, 0].
    with torch.no_grad():
        net.task_encoder.weight[:, 0] = torch.tensor([1.0, 0.0, 0.0])
    only_first = net.features(obs, task)
    with torch.no_grad():
        net.experts[1].conv3.weight.mul_(3.0)
    assert torch.equal(net.features(obs, task), only_first)  # expert 1 has weight 0 for task 0
    assert not torch.equal(base, only_first)


def test_each_sample_goes_through_its_own_head():
    torch.manual_seed(0)
    net = build_network("mtppo", 3, 7)
    obs = torch.randint(0, 11, (6, 3, 7, 7), dtype=torch.uint8)
    task = torch.tensor([0, 1, 2, 2, 1, 0])
    out = net(obs, task)
    feats = net.features(obs, task)
    for i, t in enumerate(task.tolist()):
        assert torch.allclose(out[i], net.heads[t](feats[i:i + 1])[0])


@pytest.mark.parametrize("task_order", [[0, 0, 1, 2, 2, 2], [2, 0, 1, 2, 0, 2], [1, 1, 1, 1, 1, 1]])
def test_head_routing_equals_per_sample_heads_in_any_order(task_order):
    # Sorted batches take the split/cat path directly, unsorted ones sort and unsort:
    # outputs and gradients must equal running each sample through its head on its own.
    torch.manual_seed(0)
    net = build_network("mtppo", 3, 7)
    obs = torch.randint(0, 11, (6, 3, 7, 7), dtype=torch.uint8)
    task = torch.tensor(task_order)
    feats = net.features(obs, task).detach().requires_grad_(True)
    out = route_to_heads(net.heads, feats, task)
    expected = torch.cat([net.heads[t](feats[i:i + 1]) for i, t in enumerate(task_order)])
    assert torch.allclose(out, expected, atol=1e-6)
    weights = torch.randn(6, 7)
    (grad,) = torch.autograd.grad((out * weights).sum(), feats)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), feats)
    assert torch.allclose(grad, expected_grad, atol=1e-6)


@pytest.mark.parametrize("arch", ["moe", "moore"])
@pytest.mark.parametrize("n_experts", [2, 4])
@pytest.mark.parametrize("batch", [3, 39, 75, 3 * (networks.GROUPED_EXPERTS_MAX_BATCH // 3 + 1)])
def test_grouped_expert_inference_equals_the_per_expert_path(arch, n_experts, batch):
    # Gradient-free small batches run the experts as one grouped trunk; the values must be
    # those of the per-expert path that training differentiates, with and without oneDNN.
    torch.manual_seed(0)
    net = build_network(arch, 3, 7, n_experts=n_experts)
    obs = torch.randint(0, 11, (batch, 3, 7, 7), dtype=torch.uint8)
    task = torch.arange(3).repeat_interleave(batch // 3)
    for enabled in (False, True):
        with onednn(enabled):
            with torch.no_grad():
                grouped = experts_as_one_trunk(net.experts, obs.float())
                inferred = net(obs, task)
            per_expert = torch.stack([expert(obs.float()) for expert in net.experts], dim=1).detach()
            differentiable = net(obs, task).detach()
        assert torch.equal(grouped, per_expert)
        assert torch.equal(inferred, differentiable)


def test_head_routing_of_an_empty_batch():
    net = build_network("mtppo", 3, 7)
    assert net(torch.zeros(0, 3, 7, 7), torch.zeros(0, dtype=torch.long)).shape == (0, 7)


def test_gram_schmidt_matches_qr_with_positive_diagonal():
    torch.manual_seed(0)
    vectors = torch.randn(8, 4, 32, dtype=torch.float64)
    q, r = torch.linalg.qr(vectors.transpose(1, 2))  # [8, 32, 4]
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)
    assert torch.allclose(gram_schmidt(vectors), q.transpose(1, 2), atol=1e-12)


def test_gram_schmidt_is_orthonormal_per_sample():
    torch.manual_seed(0)
    basis = gram_schmidt(torch.randn(16, 4, 1024, dtype=torch.float64))
    gram = basis @ basis.transpose(1, 2)
    assert torch.allclose(gram, torch.eye(4, dtype=torch.float64).expand(16, 4, 4), atol=1e-10)


def test_gram_schmidt_is_finite_with_a_zero_expert():
    vectors = torch.randn(5, 3, 64, requires_grad=True)
    zeroed = vectors * torch.tensor([1.0, 0.0, 1.0])[None, :, None]
    basis = gram_schmidt(zeroed)
    assert torch.isfinite(basis).all()
    assert torch.equal(basis[:, 1], torch.zeros(5, 64))
    assert torch.allclose(basis[:, 0] @ basis[:, 2].T * torch.eye(5), torch.zeros(5, 5), atol=1e-6)
    basis.sum().backward()
    assert torch.isfinite(vectors.grad).all()


def _mixed_basis(vectors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bk,bkd->bd", weights, gram_schmidt(vectors))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_orthonormal_mixture_equals_mixing_the_gram_schmidt_basis(k):
    # Float64 in, so both run in float64: values and gradients agree to rounding.
    torch.manual_seed(k)
    vectors = torch.randn(32, k, 256, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(32, k, dtype=torch.float64, requires_grad=True)
    direction = torch.randn(32, 256, dtype=torch.float64)
    ours, reference = orthonormal_mixture(vectors, weights), _mixed_basis(vectors, weights)
    assert torch.allclose(ours, reference, atol=1e-12)
    grads = torch.autograd.grad((ours * direction).sum(), (vectors, weights))
    expected = torch.autograd.grad((reference * direction).sum(), (vectors, weights))
    for got, want in zip(grads, expected, strict=True):
        assert torch.allclose(got, want, atol=1e-10)


def test_orthonormal_mixture_keeps_the_zero_residual_rule():
    torch.manual_seed(0)
    vectors = torch.randn(6, 3, 64, requires_grad=True)
    zeroed = vectors * torch.tensor([1.0, 0.0, 1.0])[None, :, None]
    weights = torch.randn(6, 3)
    ours = orthonormal_mixture(zeroed, weights)
    assert torch.allclose(ours, _mixed_basis(zeroed, weights), atol=1e-6)
    ours.sum().backward()
    assert torch.isfinite(vectors.grad).all()
    assert torch.equal(vectors.grad[:, 1], torch.zeros(6, 64))  # a zero basis vector passes no gradient


@pytest.mark.parametrize("residual", [1e-2, 1e-3])
def test_orthonormal_mixture_of_nearly_dependent_float32_experts(residual, monkeypatch):
    # A float32 Gram matrix squares the condition number; nearly dependent samples are
    # redone in float64, which keeps the error at most that of float32 Gram-Schmidt on the
    # vectors. Without that, the error is orders of magnitude larger (checked too).
    torch.manual_seed(0)
    vectors = 3 * torch.randn(64, 3, 1024)
    vectors[:, 2] = vectors[:, 0] + residual * 3 * torch.randn(64, 1024)
    weights = torch.randn(64, 3)
    exact = _mixed_basis(vectors.double(), weights.double())

    def error(mixed: torch.Tensor) -> float:
        return float((mixed.double() - exact).abs().max() / exact.abs().max())

    float32_gram_schmidt = error(_mixed_basis(vectors, weights))
    assert error(orthonormal_mixture(vectors, weights)) <= 1.5 * float32_gram_schmidt
    monkeypatch.setattr(networks, "GRAM_EXACT_BELOW", 0.0)
    assert error(orthonormal_mixture(vectors, weights)) > 20 * float32_gram_schmidt


def test_moore_mixes_through_the_gram_matrix_from_its_threshold_on():
    torch.manual_seed(0)
    net = build_network("moore", 3, 7, n_experts=3)
    obs = torch.randint(0, 11, (GRAM_MIXTURE_MIN_BATCH, 3, 7, 7), dtype=torch.uint8)
    task = torch.arange(GRAM_MIXTURE_MIN_BATCH) % 3
    with torch.no_grad():
        large = net.features(obs, task)
        small = torch.cat([net.features(obs[i:i + 4], task[i:i + 4]) for i in range(0, len(task), 4)])
    assert torch.allclose(large, small, atol=1e-5)


def test_moore_with_a_fully_zero_expert_trains_finite():
    torch.manual_seed(0)
    net = build_network("moore", 3, 7, n_experts=2)
    with torch.no_grad():
        for p in net.experts[0].parameters():
            p.zero_()
    for batch in (12, GRAM_MIXTURE_MIN_BATCH):  # both mixing paths
        obs = torch.randint(0, 11, (batch, 3, 7, 7), dtype=torch.uint8)
        out = net(obs, torch.arange(batch) % 3)
        net.zero_grad()
        out.sum().backward()
        assert torch.isfinite(out).all()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.parametrize("rows", [networks.FROZEN_PRODUCT_MIN_ROWS, 8, 25, 75])
def test_frozen_head_linear_uses_the_stored_transpose_and_matches_nn_linear(rows):
    torch.manual_seed(0)
    layer = networks.HeadLinear(1024, 128)
    x = torch.randn(rows, 1024)
    with torch.no_grad():
        expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
        with networks.frozen_weights(layer):
            assert layer.frozen_weight_t.shape == (1024, 128) and layer.frozen_weight_t.is_contiguous()
            got = layer(x)
    assert layer.frozen_weight_t is None  # dropped on exit
    assert torch.equal(got, expected)  # the same values: switching paths changes no result


def test_frozen_head_linear_is_plain_linear_with_gradients_or_few_rows():
    torch.manual_seed(0)
    layer = networks.HeadLinear(1024, 128)
    with networks.frozen_weights(layer):
        # Poisoning the stored transpose shows which path ran.
        layer.frozen_weight_t = torch.full_like(layer.frozen_weight_t, float("nan"))
        out = layer(torch.randn(32, 1024))  # autograd on: the parameter path
        assert torch.isfinite(out).all() and out.requires_grad
        with torch.no_grad():
            assert torch.isfinite(layer(torch.randn(networks.FROZEN_PRODUCT_MIN_ROWS - 1, 1024))).all()
            assert torch.isnan(layer(torch.randn(networks.FROZEN_PRODUCT_MIN_ROWS, 1024))).all()


@pytest.mark.parametrize("arch", ["mtppo", "moe", "moore"])
def test_frozen_network_gives_the_logits_of_the_unfrozen_one(arch):
    torch.manual_seed(0)
    net = build_network(arch, 3, 7, n_experts=1 if arch == "mtppo" else 3)
    obs = torch.randint(0, 11, (75, 3, 7, 7), dtype=torch.uint8)
    task = torch.arange(3).repeat_interleave(25)
    with torch.inference_mode():
        expected = net(obs, task)
        with networks.frozen_weights(net) as frozen:
            assert all(head.hidden.frozen_weight_t is not None for head in frozen.heads)
            got = net(obs, task)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)

"""ReDo on hand-built dead neurons, output-layer Reset, weight decay, the optimizers and their checkpoints."""

import copy
import math

import pytest
import torch

from agents.interventions.redo import recycle_dormant
from agents.metrics.dormant import neuron_scores
from agents.plasticity_buffer import PlasticityBuffer
from agents.treatments import build_treatment
from testkit.agents import kill, make_agent, make_alive, random_obs, random_tasks, single_thread  # noqa: F401

DEAD = {"trunk.conv1": [2, 5], "trunk.conv3": [7], "heads.1.hidden": [3, 100]}


def _warm_adam(agent, obs, task):
    """One optimizer step so every Adam moment is non-zero before the intervention."""
    loss = agent.actor(obs, task).square().mean()
    agent.actor_optimizer.zero_grad()
    loss.backward()
    agent.actor_optimizer.step()


def _dormant_sets(network, obs, task, tau, masks=None):
    return {s.layer.name: s.dormant(tau).nonzero().flatten().tolist()
            for s in neuron_scores(network, obs, task, masks) if s.dormant(tau).any()}


def test_redo_recycles_exactly_the_dead_neurons_of_a_hand_built_network():
    agent, _ = make_agent("mtppo", "redo")
    net, opt = agent.actor, agent.actor_optimizer
    obs, task = random_obs(512), random_tasks(512)
    make_alive(net)
    _warm_adam(agent, obs, task)
    kill(net, DEAD)
    assert _dormant_sets(net, obs, task, 0.01) == DEAD  # nothing else is dormant
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    moments_before = {n: opt.state[p]["exp_avg"].clone() for n, p in net.named_parameters()}

    assert recycle_dormant(net, opt, obs, task, tau=0.01) == 5

    params = dict(net.named_parameters())
    touched = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in params.items()}
    for layer, neurons in DEAD.items():
        w, b = params[f"{layer}.weight"], params[f"{layer}.bias"]
        bound = 1 / math.sqrt(w[0].numel())  # kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), ..)
        assert torch.all(w[neurons].abs() <= bound) and torch.all(w[neurons] != 0)  # fresh incoming
        assert torch.all(b[neurons] == 0)
        touched[f"{layer}.weight"][neurons] = True
        touched[f"{layer}.bias"][neurons] = True
    assert torch.all(params["trunk.conv2.weight"][:, [2, 5]] == 0)  # outgoing: next conv's channels
    touched["trunk.conv2.weight"][:, [2, 5]] = True
    for t in range(3):  # conv3 channel 7 feeds columns 7*16 .. 7*16+15 of every head
        rows = [r for r in range(128) if not (t == 1 and r in DEAD["heads.1.hidden"])]
        # (rows 3 and 100 of head 1 are recycled afterwards: their whole row is fresh)
        assert torch.all(params[f"heads.{t}.hidden.weight"][rows, 112:128] == 0)
        touched[f"heads.{t}.hidden.weight"][:, 112:128] = True
    assert torch.all(params["heads.1.out.weight"][:, [3, 100]] == 0)
    touched["heads.1.out.weight"][:, [3, 100]] = True
    for n, p in params.items():
        state = opt.state[p]
        assert torch.all(state["exp_avg"][touched[n]] == 0) and torch.all(state["exp_avg_sq"][touched[n]] == 0), n
        assert torch.equal(state["exp_avg"][~touched[n]], moments_before[n][~touched[n]]), n
        assert torch.equal(p[~touched[n]], before[n][~touched[n]]), n
    # The output layers are never recycled, even when silent.
    with torch.no_grad():
        params["heads.0.out.weight"].zero_()
    assert all(not s.layer.name.endswith(".out") for s in neuron_scores(net, obs, task))


def test_redo_respects_masks():
    agent, _ = make_agent("mtppo", "redo")
    net = agent.actor
    obs, task = random_obs(256), random_tasks(256)
    make_alive(net)
    kill(net, {"trunk.conv1": [2]})
    mask = torch.ones_like(net.trunk.conv1.weight, dtype=torch.bool)
    mask[2, 0] = False  # half-masked neuron: recycled, masked weights stay zero
    mask[9] = False  # fully masked neuron: excluded from the scores, not recycled
    with torch.no_grad():
        net.trunk.conv1.weight.mul_(mask)
    masks = {"trunk.conv1.weight": mask}
    assert _dormant_sets(net, obs, task, 0.01, masks) == {"trunk.conv1": [2]}
    assert recycle_dormant(net, agent.actor_optimizer, obs, task, 0.01, masks) == 1
    w = net.trunk.conv1.weight
    assert torch.all(w[~mask] == 0) and torch.all(w[2, 1:] != 0)


def test_redo_on_moe_recycles_expert_convs_and_heads_not_the_mixture():
    agent, _ = make_agent("moe", "redo")
    net = agent.critic
    obs, task = random_obs(256), random_tasks(256)
    make_alive(net)
    # A silent mixed-feature channel (conv3 channel 5 of both experts) is dormant but has no
    # weights of its own to recycle; the experts' conv layers and the heads are recycled.
    kill(net, {"experts.1.conv2": [4], "heads.2.hidden": [0], "experts.0.conv3": [5], "experts.1.conv3": [5]})
    assert _dormant_sets(net, obs, task, 0.01) == {"experts.1.conv2": [4], "features": [5], "heads.2.hidden": [0]}
    assert recycle_dormant(net, None, obs, task, 0.01) == 2
    assert torch.all(net.experts[1].conv3.weight[:, 4] == 0)
    assert torch.all(net.heads[2].out.weight[:, 0] == 0)


def test_redo_treatment_fires_every_n_steps_on_the_buffer():
    agent, tr = make_agent("mtppo", "redo", {"every": 10, "batch_size": 64})
    buffer = PlasticityBuffer(200)
    buffer.add(random_obs(150).numpy(), random_tasks(150).numpy())
    make_alive(agent.actor)
    make_alive(agent.critic)
    kill(agent.actor, {"heads.0.hidden": [1, 2]})
    kill(agent.critic, {"trunk.conv1": [0]})
    for step in range(1, 10):
        tr.on_step(step, agent, buffer)
    assert tr.counters()["neurons_recycled"] == 0
    tr.on_step(10, agent, buffer)
    assert tr.counters()["neurons_recycled"] == 3
    assert tr.state_dict()["counters"]["neurons_recycled"] == 3


def test_reset_reinitialises_output_layers_and_their_optimizer_state():
    agent, tr = make_agent("mtppo", "reset", {"steps": [5]})
    obs, task = random_obs(128), random_tasks(128)
    _warm_adam(agent, obs, task)
    before = {n: p.detach().clone() for n, p in agent.actor.named_parameters()}
    for step in range(1, 5):
        tr.on_step(step, agent, None)
    assert tr.counters()["resets_done"] == 0
    tr.on_step(5, agent, None)
    assert tr.counters()["resets_done"] == 1
    for n, p in agent.actor.named_parameters():
        state = agent.actor_optimizer.state[p]
        if ".out." in n:
            assert not torch.equal(p, before[n])
            assert torch.all(state["exp_avg"] == 0) and torch.all(state["exp_avg_sq"] == 0) and state["step"] == 0
        else:
            assert torch.equal(p, before[n]) and state["step"] == 1
    assert agent.critic_optimizer.state == {} or all(
        agent.critic_optimizer.state[p]["step"] == 0 for p in agent.critic.heads[0].out.parameters())


def test_reset_schedules():
    draft = build_treatment("reset", total_steps=200_000)
    assert [s for s in range(1, 200_001) if draft.is_reset_step(s)] == [60_000, 120_000]
    agent, published = make_agent("mtppo", "reset", {"every": 100, "max_resets": 2}, total_steps=400)
    fired = []
    for step in range(1, 401):
        n = published.counters()["resets_done"]
        published.on_step(step, agent, None)
        if published.counters()["resets_done"] > n:
            fired.append(step)
    assert fired == [100, 200]
    unlimited = build_treatment("reset", {"every": 100}, total_steps=400)
    assert [s for s in range(1, 401) if unlimited.is_reset_step(s)] == [100, 200, 300]  # not at the very end
    for params in ({"every": 100, "steps": [5]}, {"steps": [0]}, {"steps": "60000"}, {"every": 0},
                   {"max_resets": -1}, {"networks": ["policy"]}):
        with pytest.raises(ValueError) as info:
            build_treatment("reset", params, total_steps=400)
        assert "\n" not in str(info.value)


def test_weight_decay_flavours():
    draft = build_treatment("wd", total_steps=10)
    params = [torch.nn.Parameter(torch.ones(3))]
    opt = draft.build_optimizer(params, 1e-3)
    assert type(opt) is torch.optim.Adam and opt.defaults["weight_decay"] == 1e-3
    published = build_treatment("wd", {"coef": 1e-6, "decoupled": True}, total_steps=10)
    opt = published.build_optimizer(params, 1e-3)
    assert type(opt) is torch.optim.AdamW and opt.defaults["weight_decay"] == 1e-6
    # L2-in-Adam: a zero gradient still moves the weight (the decay term is the gradient).
    p = torch.nn.Parameter(torch.ones(2))
    opt = draft.build_optimizer([p], 1e-3)
    p.grad = torch.zeros(2)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((2,), 1 - 1e-3), atol=1e-6)
    for bad in ({"coef": -1.0}, {"decoupled": 1}, {"lambda": 1e-3}):
        with pytest.raises(ValueError):
            build_treatment("wd", bad, total_steps=10)
    assert build_treatment("dense", total_steps=10).build_optimizer(params, 1e-3).defaults["weight_decay"] == 0


@pytest.mark.parametrize("name, params", [("dense", None), ("wd", None), ("wd", {"decoupled": True}),
                                          ("gmp95", None), ("redo", None)])
def test_optimizers_use_the_fused_kernel(name, params):
    opt = build_treatment(name, params, total_steps=10).build_optimizer([torch.nn.Parameter(torch.ones(3))], 1e-3)
    assert opt.param_groups[0]["fused"] is True


def test_fused_adam_is_the_same_update():
    """One step of the fused kernel equals Adam written out (lr 0.1, first step: lr * sign(g))."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = build_treatment("dense", total_steps=10).build_optimizer([p], 0.1)
    p.grad = torch.tensor([0.5, -4.0, 0.0])
    opt.step()
    # m = 0.1 g, v = 0.001 g^2; bias-corrected m/(sqrt(v)+eps) = g/(|g| + eps) -> sign(g) (0 for g = 0)
    expected = torch.tensor([1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 4.0 / (4.0 + 1e-8), 3.0])
    assert torch.allclose(p.detach(), expected, rtol=0, atol=1e-6)


def test_a_checkpoint_from_before_fused_optimizers_resumes_fused_and_equal():
    def train_step(agent, seed):
        g = torch.Generator().manual_seed(seed)
        for network, optimizer in ((agent.actor, agent.actor_optimizer), (agent.critic, agent.critic_optimizer)):
            optimizer.zero_grad()
            out = network(random_obs(8, seed), random_tasks(8, seed=seed))
            out.mul(torch.randn(8, 1, generator=g)).sum().backward()
            optimizer.step()

    agent, _ = make_agent("moe")
    for seed in range(2):
        train_step(agent, seed)
    state = copy.deepcopy(agent.state_dict())  # as a checkpoint file holds it: no tensor shared with `agent`
    older = {**state, **{key: {**state[key], "param_groups": [{**group, "fused": None}
                                                               for group in state[key]["param_groups"]]}
                         for key in ("actor_optimizer", "critic_optimizer")}}
    # What torch alone does with such a checkpoint: the per-tensor kernel comes back.
    plain, _ = make_agent("moe", seed=1)
    plain.actor_optimizer.load_state_dict(older["actor_optimizer"])
    assert plain.actor_optimizer.param_groups[0]["fused"] is None

    resumed, _ = make_agent("moe", seed=1)
    resumed.load_state_dict(older)
    assert all(group["fused"] is True for opt in (resumed.actor_optimizer, resumed.critic_optimizer)
               for group in opt.param_groups)
    train_step(agent, 5)
    train_step(resumed, 5)
    for name in ("actor", "critic"):
        ours, theirs = agent.networks()[name].state_dict(), resumed.networks()[name].state_dict()
        for (key, a), b in zip(ours.items(), theirs.values(), strict=True):
            assert torch.equal(a, b), key

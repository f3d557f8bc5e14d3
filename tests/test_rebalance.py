"""Rebalancing over time (moesim/deployment/rebalance.py): schedule, windows, moves, stale plans."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.deployment import rebalance
from moesim.deployment.eplb import rebalance_experts
from moesim.deployment.rebalance import EplbSizes


def test_vllm_and_sglang_schedules():
    vllm = rebalance.rebalance_points(10_000, 3000, rebalance.vllm_first_plan(3000))
    np.testing.assert_array_equal(vllm, [750, 3750, 6750, 9750])
    np.testing.assert_array_equal(rebalance.rebalance_points(3000, 1000), [1000, 2000])
    with pytest.raises(ValueError, match="interval 0"):
        rebalance.rebalance_points(10, 0)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(1, 7),
    st.integers(1, 5),
    st.one_of(st.none(), st.integers(1, 6)),
    st.integers(0, 2**32 - 1),
)
def test_running_schedule_matches_the_window_sums(n_steps, window, interval, first, seed):
    loads = np.random.default_rng(seed).integers(0, 9, size=(n_steps, 2, 3))
    schedule = rebalance.RebalanceSchedule(2, 3, window, interval, first, n_steps=n_steps)
    points = rebalance.rebalance_points(n_steps, interval, first)
    expected = rebalance.window_sums(loads, window, points)
    made = []
    for step in range(n_steps):
        schedule.observe(loads[step])
        if schedule.due(step):  # never after the last step: that plan would serve none
            made.append(schedule.window_loads())
            # The slow way: the last `window` steps, summed.
            np.testing.assert_array_equal(
                made[-1], loads[max(0, step + 1 - window) : step + 1].sum(0)
            )
    assert len(made) == len(points)
    if made:
        np.testing.assert_array_equal(np.stack(made), expected)


def _slow_moves(old, new, num_gpus, num_nodes):
    """Per layer: (moved, intra) counted with sets, GPU by GPU."""
    per_gpu = old.shape[1] // num_gpus
    per_node = num_gpus // num_nodes
    result = []
    for layer in range(old.shape[0]):
        held = [set(old[layer, g * per_gpu : (g + 1) * per_gpu]) for g in range(num_gpus)]
        moved = intra = 0
        for g in range(num_gpus):
            for expert in set(new[layer, g * per_gpu : (g + 1) * per_gpu]) - held[g]:
                moved += 1
                node = range(g // per_node * per_node, (g // per_node + 1) * per_node)
                intra += any(expert in held[h] for h in node)
        result.append((moved, intra))
    return result


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(4, 2), (4, 1), (4, 4), (6, 3)]))
def test_movement_cost_matches_a_count_with_sets(seed, gpus_nodes):
    num_gpus, num_nodes = gpus_nodes
    rng = np.random.default_rng(seed)
    sizes = EplbSizes(num_gpus * 3, 1, num_nodes, num_gpus)
    old = rebalance_experts(rng.integers(0, 20, (3, 8)), *sizes)[0]
    new = rebalance_experts(rng.integers(0, 20, (3, 8)), *sizes)[0]
    cost = rebalance.movement_cost(old, new, num_gpus, num_nodes, expert_bytes=1e6)
    slow = _slow_moves(old, new, num_gpus, num_nodes)
    np.testing.assert_array_equal(cost.experts_moved, [m for m, _ in slow])
    np.testing.assert_array_equal(cost.intra_node, [i for _, i in slow])
    assert cost.bytes_moved == 1e6 * sum(m for m, _ in slow)
    np.testing.assert_array_equal(rebalance.moved_experts(old, new, num_gpus), cost.experts_moved)


def test_movement_cost_by_hand():
    old = np.array([[0, 1, 2, 3]])  # 4 GPUs of one slot, 2 nodes
    same_sets = rebalance.movement_cost(old, old, 4, 2, 10.0)
    assert same_sets.experts_moved.tolist() == [0] and same_sets.bytes_moved == 0
    swapped = rebalance.movement_cost(old, np.array([[1, 0, 3, 2]]), 4, 2, 10.0)
    assert swapped.intra_node.tolist() == [4] and swapped.inter_node.tolist() == [0]
    across = rebalance.movement_cost(old, np.array([[2, 3, 0, 1]]), 4, 2, 10.0)
    assert across.inter_node.tolist() == [4] and across.max_gpu_bytes == 10.0


def test_gpu_loads_split_each_expert_over_its_replicas():
    phy2log = np.array([[0, 1, 0, 2]])  # expert 0 on GPUs 0 and 1 (two slots a GPU)
    loads = np.array([[10.0, 4.0, 6.0]])
    np.testing.assert_allclose(rebalance.gpu_loads(phy2log, loads, 2), [[9.0, 11.0]])
    steps = np.stack([loads, 2 * loads])  # leading axes pass through
    np.testing.assert_allclose(rebalance.gpu_loads(phy2log, steps, 2), [[[9, 11]], [[18, 22]]])


def test_replay_makes_a_plan_per_interval_and_counts_the_moves():
    rng = np.random.default_rng(0)
    skew = rng.dirichlet(np.full(8, 0.3), size=2)
    loads = np.stack([[rng.multinomial(400, p) for p in skew] for _ in range(40)])
    sizes = EplbSizes(12, 4, 2, 4)
    initial = np.tile(np.arange(12) % 8, (2, 1))
    replay = rebalance.replay_rebalancing(
        loads, sizes, initial, window=10, interval=10, first_after=5, expert_bytes=2.0
    )
    np.testing.assert_array_equal(replay.points, [5, 15, 25, 35])
    assert replay.plans.shape == (5, 2, 12) and len(replay.moves) == 4
    assert replay.plan_of_step[4] == 0 and replay.plan_of_step[5] == 1
    assert replay.plan_of_step[-1] == 4
    first = rebalance_experts(loads[:5].sum(0), *sizes)[0]
    np.testing.assert_array_equal(replay.plans[1], first)
    assert replay.moves[0].bytes_moved == 2.0 * replay.moves[0].experts_moved.sum() > 0


def test_a_stale_plan_loses_to_a_fresh_one_when_the_traffic_shifts():
    rng = np.random.default_rng(1)
    hot_early, hot_late = np.full(16, 1.0), np.full(16, 1.0)
    hot_early[[0, 1]] = 12.0
    hot_late[[8, 9]] = 12.0
    steps = [hot_early] * 40 + [hot_late] * 40
    loads = np.stack([rng.multinomial(2000, p / p.sum(), size=1) for p in steps])  # (80, 1, 16)
    sizes = EplbSizes(24, 1, 1, 8)
    initial = np.tile(np.arange(24) % 16, (1, 1))
    judged = rebalance.judge_stale_plans(loads, 20, sizes, initial)
    assert judged.stale.shape == (3,)
    # Window 2 is the first after the shift: the plan from window 1 fits the old hot experts.
    assert judged.stale[1] < judged.fresh[1] - 0.1
    assert judged.stale_summed[1] < judged.fresh_summed[1] - 0.1
    # Where the traffic holds, the stale plan is about as good as the fresh one.
    assert abs(judged.stale[2] - judged.fresh[2]) < 0.05
    assert (judged.fresh > judged.initial).all()

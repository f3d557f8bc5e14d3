"""The calibrated router learning (docs/model.md §5.1-§5.3) as the engine runs it."""

from __future__ import annotations

import json
import math

import numpy as np

import moesim
from moesim.engine import RouterLearner, router_spec_for, simulate_variant
from moesim.tokens import make_stream
from tests.test_engine import SMALL, digest_job

LEARNING = {
    "enabled": True,
    "warmup_steps": 3,
    "eval_tokens": 300,
}


def small(**learning):
    data = json.loads(json.dumps(SMALL))
    data["learning"] = {**LEARNING, **learning}
    data["balance"] = {"aux": {"kind": "batch", "alpha": 1e-3}, "bias": {"enabled": True}}
    return data


#: Run by conftest.py's outputs_by_thread_count with 1 and with 2 Numba threads.
THREAD_COUNT_JOBS = {"calibrated learning": digest_job(small())}


def test_calibrated_learning_is_bit_identical_whatever_the_thread_count(outputs_by_thread_count):
    """AdamW, the loss in nats and its held-out batch do not depend on the thread count."""
    one, two = outputs_by_thread_count["calibrated learning"]
    assert len(one) == 64, one  # a SHA-256, not an error
    assert one == two


def test_the_loss_in_nats_fills_eval_columns_and_the_reward_fills_quality():
    nats = simulate_variant(moesim.load_scenario(small()), "nats")
    reward = simulate_variant(
        moesim.load_scenario(small(reward="competence_affinity", optimizer="sgd", rate=10.0)),
        "reward",
    )
    assert 0 < nats.summary["eval_loss"] < 4e-3  # below D: some expertise is matched
    assert nats.summary["eval_regret"] >= 0  # no routing beats each token's best expert
    assert math.isnan(nats.summary["quality"])
    assert math.isnan(reward.summary["eval_loss"]) and 0 < reward.summary["quality"] < 1
    recorded = nats.history["eval_loss"]
    assert np.isfinite(recorded).all() and len(recorded) == len(nats.history["step"])


def test_held_out_tokens_are_not_the_training_tokens():
    scenario = moesim.load_scenario(small())
    seeds = np.random.SeedSequence(scenario.seed).spawn(3)
    stream = make_stream(scenario.tokens, seeds[0])
    learner = RouterLearner(scenario, router_spec_for(scenario), stream.dim, seeds[2], stream)
    assert learner.eval_stream is not None and learner.eval_stream.key != stream.key
    from moesim.tokens import generate

    train, _ = generate(stream, 5, 64)
    held_out, _ = generate(learner.eval_stream, 5, 64)
    assert not np.array_equal(train, held_out)
    # The held-out stream has state of its own: drawing from it leaves the training one alone.
    assert np.array_equal(generate(stream, 5, 64)[0], train)


def test_a_fixed_router_has_no_learner_measurements():
    data = small()
    data["learning"] = {"enabled": False}
    data["balance"] = {"bias": {"enabled": True}}
    summary = simulate_variant(moesim.load_scenario(data), "fixed").summary
    assert math.isnan(summary["eval_loss"]) and math.isnan(summary["quality"])

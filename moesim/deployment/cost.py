"""What a layer's loads and traffic cost on the hardware, and how balanced they are
(docs/model.md §10.3-§10.4).

Per GPU ``g`` of layer ``l``:

* compute ``C = n_g * F / R``: ``n_g`` kept assignments it computes, ``F`` FLOPs per token of
  one expert, ``R`` the GPU's achieved FLOP/s;
* communication ``A = h (b_d + b_c) max(x_inter / B_ib, x_intra / B_nvl)``: dispatch (``b_d``
  bytes per element, FP8) then combine (``b_c``, BF16) of ``h``-wide tokens; ``x`` are the
  token copies the GPU sends or receives on each link, whichever is more (links are full
  duplex), InfiniBand and NVLink working at the same time;
* busy time ``C + A``, or ``max(C, A)`` when compute and communication overlap.

A layer takes as long as its slowest GPU; the others wait (idle). Layers run one after the
other, so a step's MoE time is the sum over layers. Plain NumPy on (L, G) arrays.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Hardware(NamedTuple):
    """The cost model's constants (SI units)."""

    hidden_size: int  #: h, elements per token
    dispatch_bytes: float  #: bytes per element sent to the experts (FP8: 1)
    combine_bytes: float  #: bytes per element sent back (BF16: 2)
    nvlink_bytes_per_second: float  #: per GPU, one direction
    ib_bytes_per_second: float  #: per GPU, one direction
    expert_flops_per_token: float  #: F, one token through one expert
    gpu_flops_per_second: float  #: R, achieved, not peak
    overlap: bool  #: compute and communication overlap


class LayerTimes(NamedTuple):
    """Seconds per GPU (L, G), and per layer (L,) for ``step``."""

    compute: np.ndarray
    communication: np.ndarray
    busy: np.ndarray
    step: np.ndarray  #: (L,) the slowest GPU's busy time
    idle: np.ndarray  #: step - busy: waiting for the slowest GPU


def busy_time(compute, communication, overlap: bool):
    """A GPU's busy time: compute plus communication, or the larger of the two with overlap."""
    return np.maximum(compute, communication) if overlap else compute + communication


def communication_time(inter_tokens, intra_tokens, hardware: Hardware):
    """Seconds of dispatch plus combine for ``inter_tokens`` (IB) and ``intra_tokens``
    (NVLink) token copies on the busier direction of each link (any shape, elementwise)."""
    bytes_per_token = hardware.hidden_size * (hardware.dispatch_bytes + hardware.combine_bytes)
    return bytes_per_token * np.maximum(
        inter_tokens / hardware.ib_bytes_per_second,
        intra_tokens / hardware.nvlink_bytes_per_second,
    )


def layer_times(gpu_loads, send_intra, recv_intra, send_inter, recv_inter, hardware) -> LayerTimes:
    """The step-time model of every GPU and layer.

    Parameters
    ----------
    gpu_loads : ndarray (L, G)
        Kept assignments each GPU computes.
    send_intra, recv_intra, send_inter, recv_inter : ndarray (L, G)
        Token copies of the dispatch (:class:`~moesim.deployment.traffic.Dispatch`).
    hardware : Hardware
    """
    compute = np.asarray(gpu_loads, np.float64) * (
        hardware.expert_flops_per_token / hardware.gpu_flops_per_second
    )
    communication = communication_time(
        np.maximum(send_inter, recv_inter), np.maximum(send_intra, recv_intra), hardware
    )
    busy = busy_time(compute, communication, hardware.overlap)
    step = busy.max(axis=-1)
    return LayerTimes(compute, communication, busy, step, step[..., None] - busy)


def balanced_step(times: LayerTimes, overlap: bool) -> np.ndarray:
    """Per layer (L,), the step if every GPU had the mean compute and the mean communication:
    the reference for the GPU-time lost to imbalance."""
    return busy_time(times.compute.mean(axis=-1), times.communication.mean(axis=-1), overlap)


def balancedness(loads) -> float:
    """vLLM's EPLB balancedness: ``sum_l mean_g x[l, g] / sum_l max_g x[l, g]`` of loads (L, G);
    1 is perfect. SGLang computes ``mean / max`` per layer (plus 1e-5 on both) and averages
    it over layers; the two agree on one layer. NaN when nothing is loaded."""
    loads = np.asarray(loads, np.float64).reshape(-1, np.shape(loads)[-1])
    highest = loads.max(axis=1).sum()
    return float(loads.mean(axis=1).sum() / highest) if highest > 0 else float("nan")


def imbalance_ratio(loads) -> np.ndarray:
    """TensorRT-LLM's imbalance ratio ``(max - mean) / mean`` over the last axis (by GPU or by
    slot); 0 is perfect. NaN where the mean is 0."""
    loads = np.asarray(loads, np.float64)
    mean = loads.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, (loads.max(axis=-1) - mean) / mean, np.nan)


def traffic_bytes(send_tokens, recv_tokens, hardware: Hardware) -> tuple:
    """Bytes a GPU sends and receives on one link over dispatch and combine: it sends its
    dispatched copies (``b_d`` per element) and returns the ones it received (``b_c``)."""
    h = hardware.hidden_size
    sent = h * (hardware.dispatch_bytes * send_tokens + hardware.combine_bytes * recv_tokens)
    received = h * (hardware.dispatch_bytes * recv_tokens + hardware.combine_bytes * send_tokens)
    return sent, received

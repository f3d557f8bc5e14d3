"""Many MoE layers (docs/model.md §1.1): how a token's router input carries from one layer to
the next, and the settings that change with depth."""

from __future__ import annotations

from pydantic import Field

from moesim.scenario.schema.base import _Section

#: Most layers a scenario may have (DeepSeek-V3 has 61, 58 of them MoE).
MAX_LAYERS = 1024


class TokenPathsConfig(_Section):
    """How a token's router input at layer l+1 follows from its input at layer l."""

    correlation: float = Field(
        0.9,
        ge=0,
        le=1,
        description="rho: a token's input at layer l+1 is rho times a fixed signed permutation "
        "of its input at layer l, plus sqrt(1 - rho^2) times fresh Gaussian noise of the "
        "token's own scale. 1: every layer sees the same directions (rearranged); 0: each "
        "layer sees independent noise (no domain structure after layer 0).",
    )

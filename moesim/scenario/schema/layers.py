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


#: A selector of layers: a number, a range ``"a-b"`` (inclusive), ``"a-"`` (to the last layer),
#: ``"all"``, or a list of these.
LayerSelector = int | str | list[int | str]

#: The sections a ``by_layer`` entry may change: the router and how it is balanced and learned.
LAYER_SECTIONS = ("router", "balance", "capacity", "learning")


class LayerSettings(_Section):
    """Settings of some layers: which layers, whether they are dense, and partial overrides of
    the router, balance, capacity and learning sections, as a variant gives them."""

    layers: LayerSelector = Field(
        ...,
        description='Which layers (0-based): a number, "a-b" (inclusive), "a-" (to the last '
        'layer), "all", or a list of these. Later entries win where they overlap.',
    )
    dense: bool = Field(
        False,
        description="Dense layers (no router, as DeepSeek-V3's first three): tokens pass "
        "through them along the token paths; they have no loads, rows or metrics.",
    )
    router: dict | None = Field(None, description="Router settings of these layers.")
    balance: dict | None = Field(None, description="Balancing of these layers.")
    capacity: dict | None = Field(None, description="Capacity of these layers.")
    learning: dict | None = Field(None, description="Router learning of these layers.")

    def overrides(self) -> dict:
        """The partial sections this entry sets (those it gives)."""
        return {name: getattr(self, name) for name in LAYER_SECTIONS if getattr(self, name)}

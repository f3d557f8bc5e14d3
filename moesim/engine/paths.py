"""Token paths through the layers (docs/model.md §1.1): a token's router input at layer l+1
follows from its input at layer l, so that expert choices in consecutive layers are correlated.

    x_{l+1} = rho * P_l x_l + sqrt(1 - rho^2) * s(x_l) * xi,    xi ~ N(0, I_d)

``P_l`` is a fixed random signed permutation of the coordinates (an orthogonal map, drawn once
per layer boundary), ``s(x)`` the root mean square of the token's coordinates (so a token keeps
its scale on average) and ``xi`` fresh noise for every token, step and layer. A signed
permutation costs O(T d), a dense rotation a d x d product per layer, and they look the same to
routers whose centroids are drawn independently per layer.

Token stream version 2 runs the whole update in one Numba pass
(:func:`moesim.kernels.paths.run_advance_tokens`), its noise from a counter-based stream per
``(key, stream, layer, step, token)``; version 1 keeps the NumPy update below (NumPy's
generator seeded by ``(key, stream, layer, step)``), so that its results stay bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from moesim.kernels.paths import run_advance_tokens

#: Noise streams: the training batch and the held-out batch get independent noise.
TRAINING, HELD_OUT = 0, 1


class TokenPaths:
    """The maps from one layer's router inputs to the next one's.

    Parameters
    ----------
    n_layers : int
        Layers of the model (``n_layers - 1`` boundaries).
    dim : int
        Token dimension d.
    correlation : float
        ``rho`` in [0, 1].
    seed : np.random.SeedSequence
        Draws the permutations and keys the noise.
    stream_version : int
        ``tokens.stream_version``: 2 draws the noise in the kernel, 1 with NumPy.
    """

    def __init__(self, n_layers: int, dim: int, correlation: float, seed: np.random.SeedSequence,
                 stream_version: int = 2):  # fmt: skip
        rng = np.random.default_rng(seed)
        self.correlation = float(correlation)
        self.noise_scale = math.sqrt(max(0.0, 1.0 - self.correlation**2))
        # Boundary by boundary, so that the first ones do not depend on how many follow.
        self.permutations = np.empty((max(1, n_layers - 1), dim), dtype=np.int64)
        self.signs = np.ones((max(1, n_layers - 1), dim))
        for boundary in range(n_layers - 1):
            self.permutations[boundary] = rng.permutation(dim)
            self.signs[boundary] = rng.choice(np.array([-1.0, 1.0]), size=dim)
        self.key = int(seed.generate_state(1, np.uint32)[0])
        self.stream_version = stream_version
        self.noise_key = np.uint64(seed.generate_state(1, np.uint64)[0])  # version 2
        self._outputs: dict[tuple[int, int], np.ndarray] = {}  # (boundary, stream) -> tokens

    def advance(self, tokens: np.ndarray, layer: int, step: int, stream: int = TRAINING):
        """Router inputs (T, d) of layer ``layer + 1`` from those of layer ``layer``.

        Keeps the dtype of ``tokens`` (float32 or float64); ``stream`` keeps the held-out
        batch's noise apart from the training batch's. At stream version 2 the array returned
        is reused by the next call for the same ``layer`` and ``stream``: copy it to keep it.
        """
        if self.stream_version >= 2:
            # One output array per boundary and stream, reused every step (its values are
            # only read until the next step): run_advance_tokens says why.
            out = run_advance_tokens(
                np.ascontiguousarray(tokens),
                self.permutations[layer],
                self.signs[layer].astype(tokens.dtype),
                self.correlation,
                self.noise_key,
                stream,
                layer,
                step,
                out=self._outputs.get((layer, stream)),
            )
            self._outputs[layer, stream] = out
            return out
        dtype = tokens.dtype
        moved = tokens[:, self.permutations[layer]] * self.signs[layer].astype(dtype)
        if self.noise_scale == 0.0:
            return moved
        rng = np.random.default_rng([self.key, stream, layer, step])
        drawn = np.float64 if dtype == np.float64 else np.float32
        noise = rng.standard_normal(tokens.shape, dtype=drawn).astype(dtype, copy=False)
        rms = np.sqrt(np.mean(np.square(tokens, dtype=np.float64), axis=1, keepdims=True))
        noise *= (self.noise_scale * rms).astype(dtype)
        moved *= dtype.type(self.correlation)
        moved += noise
        return moved

"""The token stream's cross-field checks: whole sequences, explicit weights, settings the stream
would ignore, and a readable trace file.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

from moesim.scenario.checks.problems import Report
from moesim.scenario.schema import (
    TokensConfig,
)


def check_token_stream(tokens: TokensConfig, report: Report) -> None:
    """Whole sequences per step, and explicit cluster weights that are usable."""
    if tokens.tokens_per_step % tokens.seq_len:
        report.add(
            ("tokens", "seq_len"),
            f"must divide tokens.tokens_per_step={tokens.tokens_per_step} (got {tokens.seq_len})",
            near=("tokens", "tokens_per_step"),
        )
    if tokens.cluster_weights != "explicit":
        return
    weights = tokens.explicit_weights
    if weights is None:
        report.add(
            ("tokens", "explicit_weights"),
            "required when cluster_weights is explicit",
            f"give {tokens.clusters} non-negative weights, one per cluster",
            near=("tokens", "cluster_weights"),
        )
    elif len(weights) != tokens.clusters:
        report.add(
            ("tokens", "explicit_weights"),
            f"needs one weight per cluster ({tokens.clusters}), got {len(weights)}",
        )
    elif min(weights) < 0 or not 0 < sum(weights) < math.inf:
        report.add(
            ("tokens", "explicit_weights"), "must be non-negative with a positive, finite sum"
        )


#: Settings that only one choice of another uses: (setting, the choosing setting, its values
#: that use it). Set to anything but its default otherwise, it would be silently ignored.
USED_ONLY_WITH = (
    ("file", "source", ("file",)),
    ("file_key", "source", ("file",)),
    ("file_order", "source", ("file",)),
    ("dim", "source", ("clusters",)),
    ("cluster_weights", "source", ("clusters",)),
    ("separation", "source", ("clusters",)),
    ("noise", "source", ("clusters",)),
    ("seq_coherence", "source", ("clusters",)),
    ("zipf_exponent", "cluster_weights", ("zipf",)),
    ("dirichlet_alpha", "cluster_weights", ("dirichlet",)),
    ("explicit_weights", "cluster_weights", ("explicit",)),
)


def check_unused_settings(tokens: TokensConfig, report: Report) -> None:
    """No token setting is given where the stream would ignore it (a trap: it looks applied)."""
    defaults = TokensConfig.model_fields
    for name, chooser, users in USED_ONLY_WITH:
        chosen = getattr(tokens, chooser)
        if chosen in users or getattr(tokens, name) == defaults[name].default:
            continue
        if chooser == "cluster_weights" and tokens.source != "clusters":
            continue  # reported once, at cluster_weights or the setting itself
        choice = " or ".join(users)
        report.add(
            ("tokens", name),
            f"used only when tokens.{chooser} is {choice} (it is {chosen}), so it would be ignored",
            f"set tokens.{chooser}: {users[0]}, or remove tokens.{name}",
        )
    if tokens.source == "file" and tokens.drift.kind != "none":
        report.add(
            ("tokens", "drift", "kind"),
            "a replayed trace has no cluster weights to drift, so drift would be ignored",
            "remove tokens.drift, or use source: clusters",
        )


def check_trace_file(tokens: TokensConfig, report: Report) -> tuple[int, int] | None:
    """A replayed trace is named and readable; its ``(rows, dim)``, or None."""
    if tokens.source != "file":
        return None
    if tokens.file is None:
        report.add(
            ("tokens", "file"),
            "required when tokens.source is file",
            "give the path of a .npy or .npz file of token embeddings (rows are tokens)",
            near=("tokens", "source"),
        )
        return None
    # Imported here: moesim.tokens loads Numba, which validating a scenario without a trace
    # (moesim validate, init, schema) does not need.
    from moesim.tokens import TraceError

    try:
        return check_trace_once(tokens.file, tokens.file_key, tokens.clusters)
    except TraceError as error:
        report.add(("tokens", error.field), str(error))
        return None


def check_trace_once(file: str, key: str | None, n_clusters: int) -> tuple[int, int]:
    """``moesim.tokens.check_trace``, once per file version (variants re-validate the base)."""
    stat = Path(file).stat() if Path(file).is_file() else None
    signature = (stat.st_size, stat.st_mtime_ns) if stat else None
    return checked_trace(file, key, n_clusters, signature)


@functools.lru_cache(maxsize=16)
def checked_trace(file: str, key: str | None, n_clusters: int, signature) -> tuple[int, int]:
    from moesim.tokens import check_trace

    return check_trace(file, key, n_clusters)

"""The suite's results as rich tables (times: median ± IQR), one table per section, then the
goals; and the fused step benchmark's table (``benchmarks/routing.py``)."""

from __future__ import annotations

from moesim.bench.common import DEEPSEEK_V3_ROUTING

#: Colour of each goal status.
STATUS_STYLES = {"PASS": "green", "MISS": "bold red", "SKIP": "yellow", "BUSY": "yellow"}


def render(results: dict, console) -> None:
    """Print the results of :func:`moesim.bench.run_suite` as rich tables."""
    if not console.is_terminal:
        # Written to a log or a pipe (80 columns by default): room for whole headers and numbers.
        console.width = max(console.width, 132)
    render_machine(results["meta"], console)
    sections = {
        "routing": render_routing,
        "step": render_step,
        "routers": render_routers,
        "scaling": render_scaling,
        "startup": render_startup,
        "memory": render_memory,
        "layers": render_layers,
        "noisy": render_noisy,
    }
    for name, render_section in sections.items():
        if results.get(name):
            render_section(results[name], console)
    render_goals(results["goals"], console)


def _table(title: str, *columns: str):
    """A rich table with the suite's look: first column left-aligned, numbers right-aligned."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_style="bold", box=box.SIMPLE_HEAD, header_style="bold")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    return table


def _ms(timing: dict | None) -> str:
    """A timing in seconds as "median ± IQR" in milliseconds; "-" when not measured."""
    if not timing:
        return "-"
    return f"{timing['median'] * 1e3:,.2f} ± {timing['iqr'] * 1e3:,.2f}"


def _value(value, unit: str) -> str:
    """A goal's value: yes/no, a number with its unit, or "-" when not measured."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.2f}{unit and ' ' + unit}"


def render_machine(meta: dict, console) -> None:
    """One line: CPU, cores, library versions, threads and load."""
    from rich.markup import escape

    console.print(
        f"[bold]{escape(str(meta['cpu']))}[/] ({escape(str(meta.get('cpu_detail')))}), "
        f"{meta['cores']} cores; numpy {meta['numpy']}, numba "
        f"{meta['numba']}, torch {meta['torch'] or 'absent'}; threads {meta['threads']}; "
        f"load {meta['load_average'][0]:.2f}",
        highlight=False,
    )


def render_routing(routing: dict, console) -> None:
    """Section 1: routing times per T and their ratios to moesim's."""
    table = _table(
        "Routing, DeepSeek-V3 (E=256, K=8, 8 groups keep 4), float32 — ms",
        "T",
        "moesim",
        "NumPy ref",
        "torch",
        "ref/moesim",
        "torch/moesim",
        "torch agrees",
        "f32 twin agrees",
    )
    for row in routing["rows"]:
        base = row["moesim"]["median"]
        torch_row = row.get("torch")
        table.add_row(
            f"{row['tokens']:,}",
            _ms(row["moesim"]),
            _ms(row["reference"]),
            _ms(torch_row),
            f"{row['reference']['median'] / base:,.1f}x",
            f"{torch_row['median'] / base:,.2f}x" if torch_row else "-",
            f"{row['torch_agreement']:.4%}" if torch_row else "-",
            f"{row['float32_twin_agreement']:.4%}" if "float32_twin_agreement" in row else "-",
        )
    console.print(table)
    fight = routing.get("after_matmul")
    if fight:
        after_numpy, after_moesim = fight["after_numpy"], fight["after_moesim"]
        console.print(
            f"route right after a NumPy matmul: {_ms(after_numpy)} ms; after moesim's logits: "
            f"{_ms(after_moesim)} ms ({after_numpy['median'] / after_moesim['median']:.2f}x; "
            f"T={fight['tokens']:,})",
            highlight=False,
        )
    if routing["torch_note"]:
        from rich.markup import escape

        console.print(f"[yellow]{escape(routing['torch_note'])}[/]", highlight=False)


def render_step(step: dict, console) -> None:
    """Section 2: the matmuls, the step learning off and on, and its pieces."""
    table = _table(f"Full step, T={step['tokens']:,}, E=256, d=64 — ms", "what", "time", "ratio")
    logits_blas, gradient_blas = step["blas_logits"], step["blas_gradient"]
    table.add_row("BLAS X @ W.T", _ms(logits_blas), "1")
    table.add_row("BLAS G.T @ X", _ms(gradient_blas), "")
    table.add_row(
        "step, learning off",
        _ms(step["learning_off"]),
        f"{step['learning_off']['median'] / logits_blas['median']:.1f}x X@W.T",
    )
    both = logits_blas["median"] + gradient_blas["median"]
    table.add_row(
        "step, learning on",
        _ms(step["learning_on"]),
        f"{step['learning_on']['median'] / both:.1f}x both",
    )
    for name, timing in step["pieces"].items():
        table.add_row(f"  piece: {name}", _ms(timing), "")
    console.print(table)


def render_routers(routers: dict, console) -> None:
    """Section "routers": each new kernel against its twin, then the growth of expert choice and
    Sinkhorn routing with T and E."""
    size = f"T={routers['tokens']:,}, E={routers['experts']}, K={routers['top_k']}"
    render_twins(f"Routing algorithms beyond top-K, {size}, float32 — ms", routers["rows"], console)
    if routers["growth"]:
        growth = _table("Whole-batch routers: cost per step — ms", "kernel", "T", "E", "moesim")
        growth.add_column("iterations", justify="right")
        for row in routers["growth"]:
            iterations = row["iterations"]
            growth.add_row(
                row["kernel"],
                f"{row['tokens']:,}",
                str(row["experts"]),
                _ms(row["moesim"]),
                "-" if iterations is None else str(iterations),
            )
        console.print(growth)


def render_scaling(scaling: dict, console) -> None:
    """Section 3: steps/s with 1 and 2 threads per (T, E), and whether the results agree."""
    table = _table("Scaling — steps/s", "T", "E", "1 thread", "2 threads", "speed-up", "identical")
    for row in scaling["rows"]:
        one, two = row["steps_per_second_1t"], row["steps_per_second_2t"]
        table.add_row(
            f"{row['tokens']:,}",
            str(row["experts"]),
            f"{one:,.1f}",
            f"{two:,.1f}",
            f"{two / one:.2f}x",
            "yes" if row["identical"] else "[red]no[/]",
        )
    console.print(table)


def render_startup(startup: dict, console) -> None:
    """Section 4: cold and warm wall time of ``moesim run``."""
    table = _table(f"Start-up, moesim run ({startup['steps']} steps) — s", "cache", "wall time")
    for key in ("cold", "warm"):
        timing = startup.get(key)
        table.add_row(key, f"{timing['median']:.2f} ± {timing['iqr']:.2f}" if timing else "skipped")
    console.print(table)


def render_memory(memory: dict, console) -> None:
    """Section 5: one line, the million-step peak RSS and what it was measured or extrapolated
    from."""
    measured = memory["measured"]
    how = "extrapolated from " if memory["extrapolated"] else ""
    console.print(
        f"[bold]Memory[/]: peak RSS {memory['peak_rss_mb']:,.0f} MB for 1,000,000 steps "
        f"({how}{measured['steps']:,} steps: {measured['peak_rss_mb']:,.0f} MB in "
        f"{measured['seconds']:,.1f} s)",
        highlight=False,
    )


def render_layers(layers: dict, console) -> None:
    """Section 6: seconds per step and steps/s against the number of MoE layers."""
    table = _table(
        f"Many MoE layers, T={layers['tokens']:,}, E=256, top-8 — ms per step",
        "MoE layers",
        "time",
        "steps/s",
    )
    for row in layers["rows"]:
        table.add_row(str(row["layers"]), _ms(row["step"]), f"{row['steps_per_second']:,.2f}")
    deepseek = layers["deepseek"]
    table.add_row(
        f"{deepseek['moe_layers']} (DeepSeek-V3, T={deepseek['tokens']:,})",
        _ms(deepseek["step"]),
        f"{deepseek['steps_per_second']:,.2f}",
    )
    console.print(table)
    if layers["rows"] and len(layers["rows"]) > 1:
        console.print(
            f"a layer costs {layers['seconds_per_layer'] * 1e3:.2f} ms, the rest of a step "
            f"{layers['seconds_fixed'] * 1e3:.2f} ms; largest distance from that line "
            f"{layers['largest_misfit']:.0%}",
            highlight=False,
        )
    paths = layers.get("token_paths")
    if paths:
        console.print(
            f"token paths, T={paths['tokens']:,}, d={paths['dim']} (ms): kernel "
            f"{_ms(paths['kernel'])}, NumPy update (stream 1) {_ms(paths['numpy_update'])} "
            f"({paths['speedup_vs_numpy_update']:,.1f}x), NumPy twin {_ms(paths['reference'])} "
            f"({paths['speedup_vs_reference']:,.0f}x); max |kernel - twin| "
            f"{paths['max_difference']:.1e}",
            highlight=False,
        )


def render_noisy(noisy: dict, console) -> None:
    """Noisy top-K: each kernel against its NumPy twin."""
    shape = noisy["shape"]
    title = (
        f"Noisy top-K kernels, T={shape['tokens']:,}, E={shape['experts']}, K={shape['top_k']}, "
        f"d={shape['dim']} — ms"
    )
    render_twins(title, noisy["rows"], console)


def render_twins(title: str, rows: list[dict], console) -> None:
    """Kernels against their NumPy twins, a row each: ``kernel`` (name), ``moesim`` and
    ``reference`` timings, and how far they agree: ``agreement`` (share of tokens routed alike)
    or ``max_difference`` (largest absolute difference of their outputs)."""
    by_agreement = all("agreement" in row for row in rows)
    table = _table(
        title,
        "kernel",
        "moesim",
        "NumPy twin",
        "twin/moesim",
        "agreement" if by_agreement else "max |diff|",
    )
    for row in rows:
        table.add_row(
            row["kernel"],
            _ms(row["moesim"]),
            _ms(row["reference"]),
            f"{row['reference']['median'] / row['moesim']['median']:,.1f}x",
            f"{row['agreement']:.2%}" if by_agreement else f"{row['max_difference']:.1e}",
        )
    console.print(table)


def render_goals(goals: list[dict], console) -> None:
    """The goals table: value, target and a coloured status."""
    table = _table("Goals", "goal", "value", "target", "status")
    for goal in goals:
        note = f" ({goal['note']})" if goal.get("note") else ""
        table.add_row(
            goal["goal"] + note,
            _value(goal["value"], goal["unit"]),
            f"{goal['target']} {goal['unit']}".strip(),
            f"[{STATUS_STYLES[goal['status']]}]{goal['status']}[/]",
        )
    console.print(table)


def render_fused_step(result: dict, console) -> None:
    """The table and verdict of :func:`moesim.bench.routing.bench_fused_step`."""
    shape = result["shape"]
    table = _table(
        f"routing T={shape['tokens']} E={shape['experts']} K={shape['top_k']} "
        f"groups {DEEPSEEK_V3_ROUTING['n_groups']} keep {DEEPSEEK_V3_ROUTING['topk_groups']}, "
        f"d={shape['dim']}, {result['threads']} threads",
        "implementation",
        "median ms",
        "IQR ms",
        "time / fused",
    )
    rows = [
        ("moesim fused step (Numba)", "fused"),
        ("NumPy reference", "reference"),
        ("BLAS matmul X @ W.T (context)", "matmul"),
    ]
    for label, key in rows:
        median = result[f"{key}_ms"]
        ratio = median / result["fused_ms"]
        table.add_row(label, f"{median:.2f}", f"{result[f'{key}_iqr_ms']:.2f}", f"{ratio:.1f}x")
    console.print(table)
    verdict = "PASS" if result["passed"] else "MISS"
    console.print(
        f"fused vs NumPy reference: {result['speedup_vs_reference']:.1f}x "
        f"(goal >= {result['goal_vs_reference']:g}x): {verdict}; "
        f"same expert sets on {result['agreement']:.1%} of tokens"
    )

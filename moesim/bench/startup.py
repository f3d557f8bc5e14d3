"""Section 4, start-up: wall time of ``moesim run`` on a 100-step DeepSeek-V3 scenario, in a
subprocess, cold (``NUMBA_CACHE_DIR`` = a fresh empty folder: every kernel compiles) and warm.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moesim.bench.common import step_scenario, summarize_samples


def moesim_command() -> list[str]:
    """The ``moesim`` console script next to this interpreter, else ``python -m moesim``."""
    script = Path(sys.executable).with_name("moesim")
    return [str(script)] if script.exists() else [sys.executable, "-m", "moesim"]


def startup_scenario_yaml(steps: int, tokens_per_step: int = 4096) -> str:
    """DeepSeek-V3's shipped router (one variant) for ``steps`` steps, as YAML."""
    import yaml

    scenario = step_scenario(tokens_per_step=tokens_per_step, steps=steps)
    scenario["name"] = "bench_startup"
    scenario["capacity"] = {"factor": None}
    return yaml.safe_dump(scenario, sort_keys=False)


def bench_startup(
    *, steps: int, cold: bool, repeats: int, warmup: int = 1, tokens_per_step: int = 4096
) -> dict:
    """Section 4: wall time of ``moesim run`` (cold: a fresh Numba cache; warm: cache filled).

    Without ``cold`` the warm runs use the normal cache (``warmup`` untimed runs fill it).
    """
    result = {"steps": steps, "tokens_per_step": tokens_per_step, "cold": None}
    with tempfile.TemporaryDirectory(prefix="moesim-bench-") as workdir:
        scenario = Path(workdir, "startup.yaml")
        scenario.write_text(startup_scenario_yaml(steps, tokens_per_step))
        output = str(Path(workdir, "out"))
        command = moesim_command() + ["run", str(scenario), "--quiet", "-o", output, "--force"]
        env = dict(os.environ)
        if cold:
            env["NUMBA_CACHE_DIR"] = str(Path(workdir, "numba-cache"))

        def run_once() -> float:
            started = time.perf_counter()
            completed = subprocess.run(command, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if completed.returncode != 0:
                raise RuntimeError(f"moesim run failed:\n{completed.stderr[-2000:]}")
            return seconds

        if cold:
            result["cold"] = summarize_samples([run_once()])  # compiles into the empty cache
        else:
            for _ in range(warmup):
                run_once()
        result["warm"] = summarize_samples([run_once() for _ in range(repeats)])
    return result

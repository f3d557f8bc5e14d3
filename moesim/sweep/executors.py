"""Where the points run: a local process pool or a Dask cluster, one Numba thread per point.

Both executors take the points still to run and a ``finished(record)`` callback, called in the
parent for each point as it finishes (the store writes it at once), and return True when
interrupted. A point that fails, or whose worker dies, becomes a record with status
``failed``; the sweep goes on.
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
import traceback
from collections.abc import Callable

from moesim.results.folder import to_jsonable
from moesim.sweep.plan import Point

#: ``finished(record)``: called in the parent process for each point as it finishes.
Finished = Callable[[dict], None]

_WORKER_DIED = (
    "WorkerDied: the worker process died while it ran this point alone (killed, or out of memory?)"
)


def _init_worker() -> None:
    """Process-pool initializer: one Numba thread per worker, Ctrl-C handled by the parent."""
    import signal

    os.environ["NUMBA_NUM_THREADS"] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import numba

    numba.set_num_threads(1)


@contextlib.contextmanager
def _sigint_held():
    """SIGINT held back while workers are spawned: a worker inherits the signal mask, so a
    Ctrl-C while it starts (and imports, before :func:`_init_worker`) cannot print a
    traceback; the parent receives the signal once the workers are started, none is lost."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run_point(payload: dict) -> dict:
    """Run one point (in a worker); never raises: a failure comes back as its error text.

    ``payload`` is ``{"id", "params", "seed", "variant", "scenario"}``; the record returned is
    what ``points/<id>.json`` holds.
    """
    record = {key: payload[key] for key in ("id", "params", "seed", "variant")}
    started = time.perf_counter()
    try:
        # Imported here, in the worker: the parent never needs Numba or the kernels.
        import numba

        from moesim.engine import simulate_variant
        from moesim.scenario import Scenario

        if numba.get_num_threads() > 1:
            numba.set_num_threads(1)  # Dask threads: results never depend on it, speed does
        record["numba_threads"] = numba.get_num_threads()
        scenario = Scenario.model_validate(payload["scenario"])
        outcome = simulate_variant(scenario, payload["variant"])
        record.update(status="ok", summary=to_jsonable(outcome.summary), error=None)
    except Exception as error:  # a failed point is recorded, the sweep goes on
        record.update(
            status="failed",
            summary=None,
            error=f"{type(error).__name__}: {error}",
            traceback=traceback.format_exc(),
        )
    record["seconds"] = time.perf_counter() - started
    return record


def payload(point: Point) -> dict:
    """What a worker needs to run ``point`` (JSON types, picklable): see :func:`run_point`."""
    return {
        "id": point.id,
        "params": to_jsonable(point.params),
        "seed": point.seed,
        "variant": point.variant,
        "scenario": point.scenario,
    }


def _failure(point: Point, error: str, trace: str) -> dict:
    """The record of a point that failed outside :func:`run_point` (its worker died)."""
    return {
        **{key: value for key, value in payload(point).items() if key != "scenario"},
        "status": "failed",
        "summary": None,
        "error": error,
        "traceback": trace,
    }


def _outcome(future, point: Point) -> dict:
    """The record of a finished future; a worker that died becomes a failed point."""
    try:
        return future.result()
    except Exception as error:
        return _failure(
            point, f"{type(error).__name__}: {error}", "".join(traceback.format_exception(error))
        )


@contextlib.contextmanager
def _environment(**values):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ----------------------------------------------------------------------------------------------
# Local process pool


def run_local(
    todo: list[Point],
    finished: Finished,
    *,
    jobs: int | None,
    address: str | None = None,
    should_stop: Callable[[], bool] | None = None,
    task: Callable[[dict], dict] | None = None,
) -> bool:
    """Process pool with spawned workers; returns True when interrupted.

    At most one point per worker is handed to the pool at a time. A worker that dies (killed,
    out of memory) breaks the whole pool and fails every point in it, so the points that were
    running then are known: each is retried alone in a new pool, and only one that takes its
    worker down alone is recorded as failed; the others go on. ``address`` is unused (the
    executors share a signature); ``task`` replaces :func:`run_point` (tests).
    """
    if not todo:
        return False
    pool = _LocalPool(todo, finished, jobs=jobs, task=task or run_point)
    try:
        # Workers are started as points are submitted and read NUMBA_NUM_THREADS when they
        # import numba (at unpickling, before the initializer runs): set for the whole loop.
        with _environment(NUMBA_NUM_THREADS="1"):
            return pool.run(should_stop)
    except KeyboardInterrupt:
        # Stop now: the points in progress are lost, finished ones are stored.
        pool.terminate()
        return True
    finally:
        pool.shutdown()


class _LocalPool:
    """The state of :func:`run_local`: the queue, the running futures and the pool itself."""

    def __init__(self, todo: list[Point], finished: Finished, *, jobs, task) -> None:
        self.finished = finished
        self.task = task
        self.workers = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
        self.queue = collections.deque((point, False) for point in todo)  # (point, run alone)
        self.running: dict = {}  # future -> (point, alone)
        self.pool = None
        self.hard_stop = False

    def run(self, should_stop: Callable[[], bool] | None) -> bool:
        """Submit, wait and store until every point ran or ``should_stop``; True if stopped."""
        from concurrent.futures import FIRST_COMPLETED, wait

        stopping = False
        while self.running or (self.queue and not stopping):
            if not stopping:
                self._submit()
            done, _ = wait(self.running, timeout=0.2, return_when=FIRST_COMPLETED)
            self._collect(done)
            if not stopping and should_stop is not None and should_stop():
                stopping = True  # no new point starts; running ones finish
        return stopping

    def _submit(self) -> None:
        """Hand queued points to the pool: one per free worker, a suspect point alone."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self.pool is None:
            # spawn: fork would copy Numba's thread pool state; the start method of the
            # process stays as it was.
            self.pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
            )
        while self.queue and len(self.running) < self.workers:
            point, alone = self.queue[0]
            if self.running and (alone or any(a for _, a in self.running.values())):
                break
            self.queue.popleft()
            with _sigint_held():  # submit starts the workers
                future = self.pool.submit(self.task, payload(point))
            self.running[future] = (point, alone)

    def _collect(self, done: set) -> None:
        """Store finished points; after a worker died, retry the suspects one at a time."""
        from concurrent.futures import wait
        from concurrent.futures.process import BrokenProcessPool

        if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
            done = set(self.running)  # the pool fails all of them (at once, or nearly)
            wait(done)
        suspects = []
        for future in done:
            point, alone = self.running.pop(future)
            if isinstance(future.exception(), BrokenProcessPool):
                suspects.append((point, alone))
            else:
                self.finished(_outcome(future, point))
        if not suspects:
            return
        self.pool.shutdown(wait=True)
        self.pool = None
        retry = []
        for point, alone in suspects:
            if alone or len(suspects) == 1:  # it took its worker down by itself
                self.finished(_failure(point, _WORKER_DIED, ""))
            else:
                retry.append(point)
        self.queue.extendleft((point, True) for point in reversed(retry))

    def terminate(self) -> None:
        """Stop the workers at once. Futures are left alone (cancelling them races the pool's
        own clean-up of a broken pool on 3.11)."""
        self.hard_stop = True
        for process in list((getattr(self.pool, "_processes", None) or {}).values()):
            process.terminate()

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=not self.hard_stop)


# ----------------------------------------------------------------------------------------------
# Dask


def run_dask(
    todo: list[Point],
    finished: Finished,
    *,
    jobs: int | None,
    address: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> bool:
    """One Dask task per point on ``distributed.Client(address)``; True when interrupted.

    Without ``address``, a local cluster of ``jobs`` single-threaded worker processes.
    """
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise RuntimeError(
            "the dask executor needs dask.distributed: pip install 'moesim[dask]'"
        ) from None
    if not todo:
        return False
    if address:
        client = Client(address)
    else:
        # One single-threaded worker process per job, each with one Numba thread (the workers
        # are spawned now and read NUMBA_NUM_THREADS when they import numba).
        with _environment(NUMBA_NUM_THREADS="1"):
            client = Client(
                processes=True, n_workers=jobs or os.cpu_count() or 1, threads_per_worker=1
            )
    futures = []
    try:
        points = {}
        for point in todo:
            future = client.submit(run_point, payload(point), pure=False)
            points[future.key] = point
            futures.append(future)
        for future in as_completed(futures, with_results=False):
            if future.status == "cancelled":
                continue
            finished(_outcome(future, points[future.key]))
            if should_stop is not None and should_stop():
                client.cancel([f for f in futures if not f.done()])
                return True
        return False
    except KeyboardInterrupt:
        client.cancel([f for f in futures if not f.done()])
        return True
    finally:
        client.close()


#: The executors by name (``moesim sweep --executor``).
EXECUTORS = {"local": run_local, "dask": run_dask}

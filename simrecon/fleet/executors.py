"""Where tasks run: in this process one after another (``LocalExecutor``), or on Ray (``RayExecutor``).

Both answer the same calls: ``start``, ``submit(task) -> handle``, ``wait(timeout) -> [(handle, outcome)]``,
``close``. The runner keeps the order of each log's stages, the retries and the bookkeeping; an executor only
runs what it is given. Ray runs embedded on this machine (``ray.init`` with the CPUs and GPUs given) unless an
address names a running cluster; tasks reserve the CPUs, GPUs and memory of their stage, and large artefacts
go by path on the shared output folder, never through Ray's object store.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Optional

from .spec import Resources
from .stages import StageTask
from .state import StageFigures
from .task import StageOutcome, error_line, execute


class LocalExecutor:
    """Runs each task in this process, one at a time, in the order submitted (no Ray needed)."""

    name = "local"
    parallel = 1  # tasks in flight at once

    def __init__(self) -> None:
        self._queue: deque[tuple[int, StageTask]] = deque()
        self._ids = itertools.count()

    def start(self, needs: list[Resources]) -> None:
        pass

    def submit(self, task: StageTask) -> int:
        handle = next(self._ids)
        self._queue.append((handle, task))
        return handle

    def wait(self, timeout: float) -> list[tuple[int, StageOutcome]]:
        if not self._queue:
            return []
        handle, task = self._queue.popleft()
        return [(handle, execute(task))]

    def close(self) -> None:
        self._queue.clear()


@dataclass(frozen=True)
class RayConfig:
    address: Optional[str] = None  # a running cluster ("auto", "HOST:6379" or "ray://HOST:10001"); None: embedded
    num_cpus: Optional[int] = None  # CPU cores an embedded Ray may use (None: all of this machine's)
    num_gpus: Optional[int] = None  # GPUs an embedded Ray may use (None: those it finds)


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse a HOST:PORT that nothing answers on in one line (Ray itself would retry for minutes)."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the like: Ray finds the cluster itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ValueError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


class RayExecutor:
    """One Ray task per (log, stage), with the stage's resources; Ray does no retries of its own (the runner
    does, a bounded number, for every kind of failure alike)."""

    name = "ray"

    def __init__(self, cfg: RayConfig = RayConfig()) -> None:
        self.cfg = cfg
        self._started = False
        self._inflight: dict = {}  # ObjectRef -> task
        self._remote = None
        self.parallel = 1

    def start(self, needs: list[Resources]) -> None:
        """Join the cluster or start Ray here; ValueError when a stage needs more than any node has."""
        import ray

        if not ray.is_initialized():
            if self.cfg.address:
                _check_reachable(self.cfg.address)
            kwargs = {"address": self.cfg.address} if self.cfg.address else {
                "num_cpus": self.cfg.num_cpus, "num_gpus": self.cfg.num_gpus, "include_dashboard": False}
            ray.init(log_to_driver=False, configure_logging=False, **kwargs)
            self._started = True
        self._remote = ray.remote(execute)
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
        gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
        for r in needs:
            if r.cpus > cpus or r.gpus > gpus:
                raise ValueError(f"a stage reserves {r.cpus:g} CPU(s) and {r.gpus:g} GPU(s), but the largest node "
                                 f"of the Ray cluster has {cpus:g} CPU(s) and {gpus:g} GPU(s)")
        self.parallel = max(1, int(sum(n.get("CPU", 0.0) for n in nodes)))
        where = self.cfg.address or "embedded"
        self.name = f"ray ({where}, {len(nodes)} node(s))"

    def submit(self, task: StageTask):
        r = task.stage.resources
        ref = self._remote.options(num_cpus=r.cpus, num_gpus=r.gpus, memory=int(r.memory_gb * 2**30) or None,
                                   max_retries=0, retry_exceptions=False, name=f"{task.log}/{task.stage.name}"
                                   ).remote(task)
        self._inflight[ref] = task
        return ref

    def wait(self, timeout: float) -> list[tuple[object, StageOutcome]]:
        import ray

        if not self._inflight:
            return []
        refs = list(self._inflight)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:  # and all others that are done by now
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        done = []
        for ref in ready:
            task = self._inflight.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # the worker died (kill -9, out of memory), a node was lost, ...
                outcome = StageOutcome(task.log, task.stage.name, False, error_line(exc).splitlines()[0], True,
                                       0.0, "", StageFigures())
            done.append((ref, outcome))
        return done

    def close(self) -> None:
        import ray

        for ref in self._inflight:
            ray.cancel(ref, force=True)
        self._inflight.clear()
        if self._started:
            ray.shutdown()
            self._started = False


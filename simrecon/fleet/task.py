"""One (log, stage) as a task: run it, time it, record it, and turn any failure into one line.

``execute(task)`` is what every executor runs, in-process (local) or on a Ray worker. It never raises for a
failure of the stage: it returns a ``StageOutcome`` whose ``retryable`` says whether another attempt can help
(bad input cannot; a crash, an interrupted training or a lost disk may).
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass

from .stages import RUNNERS, StageTask
from .state import DoneStage, StageFigures, record_done

MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class StageOutcome:
    log: str
    stage: str
    ok: bool
    error: str | None  # one line
    retryable: bool  # another attempt may succeed (not bad input)
    seconds: float  # wall time of this attempt
    node: str  # the host that ran it
    figures: StageFigures


def _bad_input(exc: BaseException) -> bool:
    from ..train.trainer import TrainingDiverged

    return isinstance(exc, (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError,
                            IsADirectoryError, PermissionError, TrainingDiverged))


def error_line(exc: BaseException) -> str:
    """One line for ``exc``: a drive log's first problem, else the first line of its message; the type is named
    for errors that are not about the input."""
    from ..data import LogError

    if isinstance(exc, LogError) and exc.problems:
        more = f" (and {len(exc.problems) - 1} more problem(s))" if len(exc.problems) > 1 else ""
        text = f"{exc.problems[0]}{more}"
    else:
        if isinstance(exc, KeyError) and exc.args:
            exc = Exception(exc.args[0]) if isinstance(exc.args[0], str) else exc
        text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        if not _bad_input(exc) or not text:
            text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def _node() -> str:
    """The host, and on Ray the node (several nodes may share a host)."""
    ray = sys.modules.get("ray")  # a Ray worker has it loaded; nothing else needs it
    if ray is not None and ray.is_initialized():
        return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"
    return socket.gethostname()


def execute(task: StageTask) -> StageOutcome:
    """Run ``task``'s stage; on success record it in the log's per-log state (the last act: a stage recorded there
    is complete). Threads: as many as the CPUs the stage reserved."""
    import torch

    threads = torch.get_num_threads()  # restored after: the local executor runs in the caller's process
    torch.set_num_threads(max(1, int(task.stage.resources.cpus)))
    node, start = _node(), time.time()
    try:
        task.log_out.mkdir(parents=True, exist_ok=True)
        figures = RUNNERS[task.stage.kind](task)
        seconds = time.time() - start
        record_done(task.log_out, task.stage.name, DoneStage(task.stage.key(), seconds, node, figures))
    except Exception as exc:  # Ctrl-C and SystemExit stop the run, they are not the stage's failure
        return StageOutcome(task.log, task.stage.name, False, error_line(exc), not _bad_input(exc),
                            time.time() - start, node, StageFigures())
    finally:
        torch.set_num_threads(threads)
    return StageOutcome(task.log, task.stage.name, True, None, False, seconds, node, figures)


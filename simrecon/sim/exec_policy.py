"""``exec:COMMAND``: a driving stack in any language, as a separate process speaking JSON lines.

The protocol (docs/simulation.md, "exec: policies"), one JSON object per line, UTF-8:

- simrecon -> process, at each episode's start: ``{"type": "reset", "protocol": 1, "dt": s, "action_mode":
  "rate" | "angle", "action_low": [..], "action_high": [..], "start_time": s}``;
  no answer is expected.
- simrecon -> process, every step: ``{"type": "observation", "step": k, "time": s, "ego": [speed, accel,
  yaw_rate, steer], "route": [[x, y], ...] (ego frame, metres), "images": {"CAMERA/rgb": "path.png",
  "CAMERA/depth": "path.npy", ...}}``. The image files exist until the answer arrives.
- process -> simrecon, one line per observation: ``{"action": [acceleration, steering]}`` (or the bare list).
- at the end simrecon closes the process's stdin and waits ``exit_wait_s`` before terminating it.

A process that exits, writes something that is not an action, or does not answer within the timeout ends the
run with a ``policy_error`` event naming what happened (lines it wrote to stderr go to simrecon's stderr).
"""

from __future__ import annotations

import json
import queue
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..config_io import doc
from .dynamics import action_bounds

PROTOCOL = 1


@dataclass
class ExecConfig:
    """How simrecon talks to an ``exec:`` policy's process."""

    answer_timeout_s: float = doc(30.0, "longest wait for the process's action after an observation (the first "
                                        "one includes the process's start-up)", unit="s")
    exit_wait_s: float = doc(5.0, "wait for the process to exit after its stdin is closed, then terminate it",
                             unit="s")
    images: bool = doc(True, "send the observed cameras (as files); false: the ego state and route only",
                       unit="switch")

    def check(self) -> None:
        for name in ("answer_timeout_s", "exit_wait_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1e6:
                raise ValueError(f"exec.{name}: must be a positive number of seconds, got {v!r}")


def _pump(stream, lines: queue.Queue) -> None:
    """Move ``stream``'s lines into ``lines``; None once it closes."""
    for line in stream:
        lines.put(line)
    lines.put(None)


class ExecPolicy:
    """A policy that forwards observations to a process and reads its actions back."""

    def __init__(self, command: str, cfg: ExecConfig | None = None):
        self.cfg = cfg or ExecConfig()
        self.cfg.check()
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise ValueError(f"--policy exec:{command}: {exc}") from None
        if not self.argv:
            raise ValueError("--policy exec:: no command after exec:")
        if shutil.which(self.argv[0]) is None:
            raise ValueError(f"--policy exec:{command}: no such program {self.argv[0]!r}")
        self.name = f"exec:{command}"
        self.needs_images = self.cfg.images
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()
        self.folder: Path | None = None

    def _start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     encoding="utf-8", bufsize=1)
        threading.Thread(target=_pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        self.folder = Path(tempfile.mkdtemp(prefix="simrecon-exec-"))

    def _send(self, message: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise RuntimeError(f"the process exited (code {self.proc.poll()})") from None

    def reset(self, world) -> None:
        if self.proc is None:
            self._start()
        low, high = action_bounds(world.vehicle, world.action_mode)
        self._send({"type": "reset", "protocol": PROTOCOL, "dt": world.dt, "action_mode": world.action_mode,
                    "action_low": [float(v) for v in low], "action_high": [float(v) for v in high], "start_time": world.t0})
        self.world = world

    def _write_images(self, step: int, obs: dict) -> dict[str, str]:
        paths = {}
        for key, arr in obs.items():
            camera, _, kind = key.rpartition("/")
            if not camera:
                continue
            safe = camera.replace("/", "_")
            if kind == "rgb":
                path = self.folder / f"{step:06d}_{safe}_rgb.png"
                Image.fromarray(arr).save(path, compress_level=1)
            else:
                path = self.folder / f"{step:06d}_{safe}_{kind}.npy"
                np.save(path, arr)
            paths[key] = str(path)
        return paths

    def act(self, obs: dict):
        rec = self.world.record
        images = self._write_images(rec.step, obs)
        try:
            self._send({"type": "observation", "step": rec.step, "time": rec.time,
                        "ego": [float(v) for v in obs["ego"]], "route": np.asarray(obs["route"]).tolist(),
                        "images": images})
            return self._answer()
        finally:
            for path in images.values():
                Path(path).unlink(missing_ok=True)

    def _answer(self):
        try:
            line = self.lines.get(timeout=self.cfg.answer_timeout_s)
        except queue.Empty:
            raise TimeoutError(f"no answer within {self.cfg.answer_timeout_s:g} s") from None
        if line is None:
            self.proc.wait(timeout=self.cfg.exit_wait_s)
            raise RuntimeError(f"the process exited (code {self.proc.returncode}) instead of answering")
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"the answer is not JSON: {line.strip()[:120]!r}") from None
        return msg.get("action") if isinstance(msg, dict) else msg

    def close(self) -> None:
        """Close the process's stdin, wait for it to exit (terminate it after ``exit_wait_s``), drop the files."""
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=self.cfg.exit_wait_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

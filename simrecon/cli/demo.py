"""``simrecon demo``: the main job on the bundled example (a synthetic street)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from ..data import validate_log
from ..report import write_report
from ..synth import SynthConfig
from .progress import run_synth
from .tables import print_log_tables


def _reusable(log_dir: Path, cfg: SynthConfig) -> bool:
    """True when ``log_dir`` was generated with exactly ``cfg`` (so the demo can skip regenerating)."""
    try:
        data = json.loads((log_dir / "transforms.json").read_text())
    except (OSError, ValueError):
        return False
    return data.get("synth_config") == asdict(cfg) and (log_dir.parent / "gt" / "actors.json").is_file()


def run_demo(out_dir: Path, seconds: float, out: Console, err: Console) -> Path:
    """Generate (or reuse) the synthetic log, validate it, print its tables, write the HTML report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = SynthConfig(seconds=seconds)
    synth_dir = out_dir / "synthetic"
    log_dir = synth_dir / "log"
    if _reusable(log_dir, cfg):
        out.print(f"1/3 reusing synthetic street in {synth_dir} (same settings)", highlight=False)
    else:
        out.print(f"1/3 generating synthetic street into {synth_dir}", highlight=False)
        run_synth(synth_dir, cfg, force=True, console=err)
    out.print("2/3 validating", highlight=False)
    log, problems = validate_log(log_dir)
    if problems:  # the generator's own output must always validate: this is a bug, not user error
        raise RuntimeError("generated log does not validate:\n" + "\n".join(map(str, problems)))
    print_log_tables(out, log)
    out.print("3/3 writing report", highlight=False)
    gt = f"<h2>Ground truth</h2><p>Novel-view ground truth in <code>{synth_dir / 'gt'}</code>: " \
         "front camera with the ego shifted +1 m / -1 m / +2 m left, and the log without car_0.</p>"
    return write_report(log, out_dir / "report.html", title="simrecon demo: synthetic street", extra_html=gt)

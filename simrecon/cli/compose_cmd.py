"""``simrecon compose`` / ``export`` / ``regress``: the work behind the commands (docs/scenarios.md, docs/export.md).

The typer wiring lives in the CLI app; bad input raises ``ValueError`` (``ScenarioError``),
``FileExistsError`` or ``FileNotFoundError`` with a one-line message, which the app maps to exit code 2.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _bar(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.fields[what]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.description}"), console=console, transient=True)


def _run_export(scenario: Path, format: str, out: Path, force: bool, console: Console, what: str,
                renderer: str = "fast"):
    from ..compose.scenario import load_scenario
    from ..export import export
    from ..export.formats import get_format

    get_format(format)  # unknown format: fail before opening the scene
    with console.status(f"opening {scenario}"):
        plan = load_scenario(scenario, renderer=renderer)
    with _bar(console) as progress:
        task = progress.add_task("", total=len(plan.frame_keys()), what=what)
        result = export(plan, format, out, force=force,
                        progress=lambda done, total, label: progress.update(task, completed=done, total=total,
                                                                         description=label))
    note = f" ({result.reused} frames reused from an interrupted run)" if result.reused else ""
    note += f" and {result.sweeps} lidar sweeps" if result.sweeps else ""
    console.print(escape(f"wrote {out}: {result.frames} frames of scenario {plan.name!r} from "
                         f"{len(plan.cameras)} camera(s), {format} layout{note}"), highlight=False, soft_wrap=True)
    return result


def compose_command(scenario: Path, out: Path, force: bool = False, console: Console | None = None,
                    renderer: str = "fast"):
    """Render ``scenario`` into ``out`` (our own layout: RGB, depth, instance, semantic, labels, manifest)."""
    return _run_export(Path(scenario), "simrecon", Path(out), force, console or Console(stderr=True), "compose",
                       renderer)


def export_command(scenario: Path, format: str, out: Path, force: bool = False, console: Console | None = None,
                   renderer: str = "fast"):
    """Render ``scenario`` as a dataset: ``format`` is simrecon, kitti, coco or nerfstudio."""
    return _run_export(Path(scenario), format, Path(out), force, console or Console(stderr=True), f"export {format}",
                       renderer)


def regress_command(suite: Path, update_golden: bool = False, out: Path | None = None,
                    console: Console | None = None, renderer: str = "fast") -> int:
    """Run a regression suite; prints one line per scenario and returns the exit code (0 pass, 1 regression)."""
    from ..export.regress import regress

    console = console or Console(stderr=True)
    with _bar(console) as progress:
        tasks: dict[str, int] = {}

        def tick(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task("", total=total, what=name)
            progress.update(tasks[name], completed=done, total=total)

        result = regress(suite, update_golden=update_golden, out=out, progress=tick, renderer=renderer)
    for c in result.cases:
        s = c.summary
        metrics = (f"PSNR {s['psnr_mean']:.2f} dB, SSIM {s['ssim_mean']:.4f}, {s['frames']} frames"
                   if s else "")
        if c.passed:
            extra = " (golden updated)" if c.updated else ""
            console.print(f"[green]PASS[/] {escape(c.name)}: {metrics}{extra}", highlight=False, soft_wrap=True)
        elif c.error:
            console.print(f"[red]ERROR[/] {escape(c.name)}: {escape(c.error)}", highlight=False, soft_wrap=True)
        else:
            console.print(f"[red]FAIL[/] {escape(c.name)}: {escape('; '.join(c.failures))}", highlight=False,
                          soft_wrap=True)
    n_bad = sum(1 for c in result.cases if not c.passed)
    verdict = "[green]passed[/]" if result.passed else f"[red]{n_bad} of {len(result.cases)} failed[/]"
    console.print(f"suite {escape(result.suite)}: {verdict}; report {escape(str(result.html))}, "
                  f"JUnit {escape(str(result.junit))}", highlight=False, soft_wrap=True)
    return 0 if result.passed else 1


def run_demo_scenarios(out_dir: Path, log_dir: Path, console: Console, scene_dir: Path | None = None,
                       times: tuple[float, ...] | None = None) -> str:
    """The demo's scenario step: remove car_0 and shift the ego lane +1 m on the synthetic street, score both
    against the generator's ground truth (``log_dir/../gt``), export a small COCO dataset; returns an HTML
    section for the demo report (image paths relative to ``out_dir``).

    ``scene_dir`` renders on another scene (a reconstruction); default: the synthetic street itself.
    """
    import html
    import json

    import numpy as np
    import yaml
    from PIL import Image

    from ..scene.metrics import psnr
    from ..export import compose, export

    out_dir, log_dir = Path(out_dir), Path(log_dir)
    scene = Path(scene_dir) if scene_dir is not None else log_dir
    gt_root = log_dir.parent / "gt"
    if times is None:  # three logged front-camera times spread over the drive
        logged_t = sorted({f["timestamp"] for f in _log_frames(log_dir) if f.get("camera") == "front"})
        times = tuple(logged_t[i] for i in sorted({0, len(logged_t) // 2, len(logged_t) - 1}))
    sc_dir = out_dir / "scenarios"
    sc_dir.mkdir(parents=True, exist_ok=True)
    specs = {"remove_actor": ({"actors": [{"id": "car_0", "remove": True}]}, "actor_removed"),
             "lane_shift": ({"ego": {"lateral": 1.0}}, "ego_shift_left_1m")}
    rows, figs = [], []
    for name, (edit, gt_name) in specs.items():
        doc = {"name": name, "scene": str(scene.resolve()), "cameras": ["front"], "time": {"times": list(times)},
               **edit}
        path = sc_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        target = out_dir / "compose" / name
        console.print(f"composing {name} -> {target}", highlight=False)
        compose(path, target, force=True)
        comp = json.loads((target / "composition.json").read_text())
        gt = json.loads((gt_root / gt_name / "cameras.json").read_text()) if (gt_root / gt_name).is_dir() else None
        scores = []
        for rel in comp["frames"]:
            rec = json.loads((target / rel).read_text())
            img = np.asarray(Image.open(target / rec["files"]["rgb"]).convert("RGB"))
            if gt is not None:
                ref = min(gt["frames"], key=lambda f: abs(f["timestamp"] - rec["timestamp"]))
                if abs(ref["timestamp"] - rec["timestamp"]) < 1e-6:
                    ref_img = Image.open(gt_root / gt_name / ref["file_path"]).convert("RGB")
                    scores.append(psnr(img, np.asarray(ref_img)))
        mid = json.loads((target / comp["frames"][len(comp["frames"]) // 2]).read_text())
        logged = next(f for f in _log_frames(log_dir) if f["camera"] == "front"
                      and abs(f["timestamp"] - mid["timestamp"]) < 1e-6)
        a = np.asarray(Image.open(log_dir / logged["file_path"]).convert("RGB"))
        b = np.asarray(Image.open(target / mid["files"]["rgb"]).convert("RGB"))
        gap = np.full((a.shape[0], 6, 3), 255, np.uint8)
        preview = out_dir / "compose" / f"{name}_preview.jpg"
        Image.fromarray(np.concatenate([a, gap, b], axis=1)).save(preview, quality=90)
        score = f"{np.mean(scores):.2f} dB over {len(scores)} frames" if scores else "no ground truth"
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(score)}</td>"
                    f"<td><code>{html.escape(str(target))}</code></td></tr>")
        figs.append(f"<figure><img src='{html.escape(str(preview.relative_to(out_dir)))}' style='max-width:100%'>"
                    f"<figcaption>{html.escape(name)}: logged | composed, t={mid['timestamp']:.2f}s"
                    "</figcaption></figure>")
    coco = out_dir / "export" / "coco"
    console.print(f"exporting remove_actor as COCO -> {coco}", highlight=False)
    res = export(sc_dir / "remove_actor.yaml", "coco", coco, force=True)
    n_ann = len(json.loads((coco / "annotations.json").read_text())["annotations"])
    return ("<h2>Scenarios</h2><p>Composed from the scene with <code>simrecon compose</code>; PSNR against the "
            "generator's exact ground truth (target: at least 24 dB for a reconstruction).</p>"
            "<table><tr><th>scenario</th><th>PSNR vs ground truth</th><th>output</th></tr>" + "".join(rows) +
            f"</table>{''.join(figs)}<p>COCO export: {res.frames} images, {n_ann} annotations in "
            f"<code>{html.escape(str(coco))}</code></p>")


def _log_frames(log_dir: Path) -> list[dict]:
    import json

    return json.loads((Path(log_dir) / "transforms.json").read_text())["frames"]

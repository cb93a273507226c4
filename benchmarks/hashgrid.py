"""Throughput and peak memory of the hash-grid encoding backends.

For each N and each backend available here it measures

* ``fwd``: forward only, under ``torch.no_grad()`` (inference);
* ``fwd+bwd``: forward and backward of ``out.sum()``-like upstream gradient to the table (the training case;
  ``--position-grad`` also asks for the gradient to the positions);

as points per second (best of the repeats, after one warm-up; the JSON also has the medians) and the peak extra memory during fwd+bwd
(CUDA: ``torch.cuda.max_memory_allocated``; CPU: the rise of the process's peak RSS, reset through
``/proc/self/clear_refs``). The ``x ref`` columns divide by the reference (``torch``) measured in the same run;
``x ref CPU s`` compares fwd+bwd by process CPU time (all threads; includes OpenMP spin-waiting), which a
busy shared machine disturbs less than wall time.

    python benchmarks/hashgrid.py                      # N = 2^16, 2^18, 2^20, every backend
    python benchmarks/hashgrid.py --log2-n 16 --json   # one size, JSON on stdout
    python benchmarks/hashgrid.py --device cuda --log2-n 18 20 22   # on a GPU: cuda kernel vs torch reference
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simrecon.encoding import HashGridConfig, hash_grid_encode
from simrecon.encoding._build import load_extension, tcnn_module
from simrecon.encoding.functional import kernel_supports


def _rss_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], device: torch.device, repeats: int, budget: float) -> tuple[float, float, float]:
    """(best, median, best CPU) seconds per call: one warm-up, then ``repeats`` calls, or at least 2 once they
    have taken ``budget`` seconds. The best wall time is the one reported: on a shared machine it is the least
    disturbed. The CPU time (process, all threads) is the work done, whatever the machine's load."""
    fn()
    _sync(device)
    times: list[float] = []
    cpu_times: list[float] = []
    while len(times) < repeats:
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        if len(times) >= 2 and sum(times) > budget:
            break
    return min(times), statistics.median(times), min(cpu_times)


def _peak_memory(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak extra memory (MiB) while running ``fn`` once."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    if not _rss_reset():
        return None
    base = _status_kib("VmRSS")
    fn()
    return max(0, _status_kib("VmHWM") - base) / 1024


def available(device: torch.device, config: HashGridConfig) -> list[str]:
    """Backends that can run on ``device`` (builds the kernels when needed)."""
    names = ["torch"]
    kind = device.type
    if kind in ("cpu", "cuda") and kernel_supports(config) is None and load_extension(kind) is not None:
        names.append(kind)
    if kind == "cuda" and tcnn_module() is not None:
        names.append("tcnn")
    return names


def bench_backend(
    backend: str, n: int, config: HashGridConfig, device: torch.device, args: argparse.Namespace
) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    positions = torch.rand(n, 3, generator=gen).to(device)  # [N, 3]
    if backend == "tcnn":
        from simrecon.encoding import HashGridEncoding

        module = HashGridEncoding(
            config.num_levels, config.features_per_level, config.log2_hashmap_size,
            config.base_resolution, config.max_resolution, backend="tcnn",
        ).to(device)
        params = list(module.parameters())

        def encode(p: torch.Tensor) -> torch.Tensor:
            return module(p)
    else:
        table = (torch.rand(config.table_shape, generator=gen) * 2e-4 - 1e-4).to(device)  # [L, T, F]
        table.requires_grad_(True)
        params = [table]

        def encode(p: torch.Tensor) -> torch.Tensor:
            return hash_grid_encode(p, table, config, backend=backend)

    grad_out = torch.randn(n, config.output_dim, generator=gen).to(device)  # [N, L * F]
    pos_grad = positions.clone().requires_grad_(args.position_grad)

    def forward() -> None:
        with torch.no_grad():
            encode(positions)

    def forward_backward() -> None:
        for p in params:
            p.grad = None
        pos_grad.grad = None
        out = encode(pos_grad)
        out.backward(grad_out.to(out.dtype))

    t_fwd, t_fwd_median, cpu_fwd = _time(forward, device, args.repeats, args.budget)
    t_fb, t_fb_median, cpu_fb = _time(forward_backward, device, args.repeats, args.budget)
    for p in params:
        p.grad = None
    peak = _peak_memory(forward_backward, device)
    return {
        "backend": backend,
        "n": n,
        "device": str(device),
        "fwd_s": t_fwd,
        "fwd_bwd_s": t_fb,
        "fwd_median_s": t_fwd_median,
        "fwd_bwd_median_s": t_fb_median,
        "fwd_cpu_s": cpu_fwd,
        "fwd_bwd_cpu_s": cpu_fb,
        "fwd_points_per_s": n / t_fwd,
        "fwd_bwd_points_per_s": n / t_fb,
        "peak_mem_mib": peak,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log2-n", type=int, nargs="+", default=[16, 18, 20],
                        choices=[10, 12, 14, 16, 18, 20, 22, 24],
                        help="batch sizes as powers of two (default: 16 18 20; 22 and 24 are GPU sizes)")
    parser.add_argument("--backends", nargs="+", default=None, help="subset of backends (default: all available)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per measurement (best is reported)")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds after which a measurement stops repeating (it always times 2 calls)")
    parser.add_argument("--position-grad", action="store_true", help="fwd+bwd also computes d/d positions")
    parser.add_argument("--levels", type=int, default=16)
    parser.add_argument("--features", type=int, default=2)
    parser.add_argument("--log2-table", type=int, default=19)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = HashGridConfig(num_levels=args.levels, features_per_level=args.features,
                            log2_hashmap_size=args.log2_table)
    backends = available(device, config)
    if args.backends:
        backends = [b for b in backends if b in args.backends or b == "torch"]

    rows: list[dict[str, Any]] = []
    for log2_n in args.log2_n:
        n = 1 << log2_n
        results = [bench_backend(b, n, config, device, args) for b in backends]
        ref = next(r for r in results if r["backend"] == "torch")
        for r in results:
            r["fwd_speedup"] = ref["fwd_s"] / r["fwd_s"]
            r["fwd_bwd_speedup"] = ref["fwd_bwd_s"] / r["fwd_bwd_s"]
            r["fwd_bwd_cpu_speedup"] = ref["fwd_bwd_cpu_s"] / max(r["fwd_bwd_cpu_s"], 1e-9)
            rows.append(r)
            if not args.json:
                print(f"  done {r['backend']:>6} N=2^{log2_n}", file=sys.stderr)

    meta = {
        "date": dt.date.today().isoformat(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "config": {"num_levels": config.num_levels, "features_per_level": config.features_per_level,
                   "log2_hashmap_size": config.log2_hashmap_size, "base_resolution": config.base_resolution,
                   "max_resolution": config.max_resolution},
        "position_grad": args.position_grad,
    }
    if args.json:
        print(json.dumps({"meta": meta, "results": rows}, indent=2))
        return 0
    print(f"hash grid L={config.num_levels} F={config.features_per_level} T=2^{config.log2_hashmap_size}, "
          f"device {device}, {meta['threads']} threads, torch {torch.__version__}, "
          f"grad to positions: {'yes' if args.position_grad else 'no'}")
    header = (f"| {'N':>5} | {'backend':>7} | {'fwd Mpts/s':>10} | {'x ref':>6} | {'fwd+bwd Mpts/s':>14} | {'x ref':>6} "
              f"| {'x ref CPU s':>11} | {'peak MiB':>8} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        peak = "n/a" if r["peak_mem_mib"] is None else f"{r['peak_mem_mib']:.0f}"
        print(f"| 2^{r['n'].bit_length() - 1:<3} | {r['backend']:>7} | {r['fwd_points_per_s'] / 1e6:>10.3f} | "
              f"{r['fwd_speedup']:>6.1f} | {r['fwd_bwd_points_per_s'] / 1e6:>14.3f} | {r['fwd_bwd_speedup']:>6.1f} | "
              f"{r['fwd_bwd_cpu_speedup']:>11.1f} | {peak:>8} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

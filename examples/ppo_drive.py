"""Reinforcement learning on simrecon: PPO (stable-baselines3) learns to drive the synthetic street in closed loop.

    pip install -c constraints.txt -e '.[sim,rl]'
    python examples/ppo_drive.py --out runs/ppo              # about 5 minutes on 2 CPU cores
    python examples/ppo_drive.py --out runs/ppo --images     # a 64x40 front camera as well (slower)

The environment is ``simrecon/Drive-v0`` on the exact synthetic street (the generator's own renderer), with a
random start (standard deviations 0.5 m sideways, 0.1 rad of heading, 1 m/s of speed: ``world.start_noise_*``), so the
policy has to steer back onto the route. The observation is the ego state and the next 10 route points in the
vehicle frame (and, with ``--images``, the front camera); the reward is the environment's (progress per metre,
penalties for collisions, leaving the road and discomfort). Before and after training the script drives 10
episodes deterministically and prints the mean return and route completion; it writes ``curve.csv`` (episode,
return) and ``curve.png`` (the returns, smoothed) into ``--out``, and ``model.zip``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import gymnasium as gym
import numpy as np
from PIL import Image, ImageDraw
from stable_baselines3 import PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.monitor import Monitor

import simrecon.sim  # noqa: F401  (registers simrecon/Drive-v0)
from simrecon.sim import SimConfig
from simrecon.synth import SynthConfig, generate


def make_env(log: Path, images: bool, seed: int) -> gym.Env:
    cfg = SimConfig()
    cfg.world.start_noise_lateral, cfg.world.start_noise_yaw, cfg.world.start_noise_speed = 0.5, 0.1, 1.0
    cfg.world.end_on_off_road = True
    env = gym.make("simrecon/Drive-v0", scenario=log, config=cfg, images=images, width=64, height=40)
    env.reset(seed=seed)
    return Monitor(env)


def evaluate(model: PPO, env: gym.Env, episodes: int, seed: int) -> tuple[float, float]:
    """Mean return and route completion of ``episodes`` deterministic drives (starts drawn from ``seed``)."""
    returns, completion = [], []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        done, total, info = False, 0.0, {}
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        completion.append(float(info["metrics"]["route_completion"]) if "metrics" in info else float("nan"))
    return float(np.mean(returns)), float(np.nanmean(completion))


def plot(returns: list[float], path: Path, width: int = 640, height: int = 320) -> None:
    """The episode returns (grey) and their running mean over 20 episodes (blue), as a PNG."""
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    if len(returns) >= 2:
        r = np.asarray(returns, float)
        smooth = np.convolve(r, np.ones(20) / 20, mode="valid") if len(r) >= 20 else r
        lo, hi = float(r.min()), float(r.max()) if r.max() > r.min() else float(r.min()) + 1
        def xy(i, v, n):
            return 40 + (width - 50) * i / max(n - 1, 1), height - 30 - (height - 50) * (v - lo) / (hi - lo)
        d.line([xy(i, v, len(r)) for i, v in enumerate(r)], fill=(190, 190, 190))
        off = len(r) - len(smooth)
        d.line([xy(i + off, v, len(r)) for i, v in enumerate(smooth)], fill=(9, 105, 218), width=2)
        d.text((4, 4), f"return per episode ({lo:.0f} .. {hi:.0f}); blue: mean of 20", fill=(0, 0, 0))
        d.text((width - 120, height - 20), f"{len(r)} episodes", fill=(0, 0, 0))
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/ppo"))
    ap.add_argument("--steps", type=int, default=30000, help="environment steps of training")
    ap.add_argument("--images", action="store_true", help="observe a 64x40 front camera too")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "street" / "log"
    if not (log / "transforms.json").is_file():
        generate(args.out / "street", SynthConfig(seconds=4.0, width=64, height=40, seed=args.seed,
                                                  ground_truth=False))
    env = make_env(log, args.images, args.seed)
    policy = "MultiInputPolicy"
    model = PPO(policy, env, n_steps=512, batch_size=128, learning_rate=1e-3, gamma=0.98, seed=args.seed,
                verbose=0)
    model.set_logger(Logger(None, []))  # no log folder (SB3 would make one in the temp directory)
    before = evaluate(model, make_env(log, args.images, 1000), 10, 1000)
    print(f"before training: return {before[0]:.1f}, route completion {100 * before[1]:.0f} %", flush=True)
    model.learn(total_timesteps=args.steps)
    after = evaluate(model, make_env(log, args.images, 1000), 10, 1000)
    print(f"after {args.steps} steps: return {after[0]:.1f}, route completion {100 * after[1]:.0f} %", flush=True)
    returns = [float(r) for r in env.get_episode_rewards()]
    with open(args.out / "curve.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["episode", "return"])
        w.writerows(enumerate(returns))
    plot(returns, args.out / "curve.png")
    model.save(args.out / "model.zip")
    print(f"wrote {args.out}/curve.csv, curve.png, model.zip ({len(returns)} training episodes)")


if __name__ == "__main__":
    main()

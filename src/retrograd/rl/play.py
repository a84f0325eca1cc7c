"""``retrograd rl play RUN``: episodes of a run's policy, rendered by gymnasium (``render_mode =
"rgb_array"``) and written as an animated GIF with Pillow, so a user sees what the agent does.

    retrograd rl play runs/rl_cartpole_ppo --episodes 2 --output cartpole.gif

The policy is the last checkpoint's, acting deterministically (``Algorithm.act``); episode ``i`` is
reset with ``seed + i``. pygame-based renderers get ``SDL_VIDEODRIVER=dummy`` (no display needed).
"""
from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from ..train.formatting import plural
from .config import ConfigError
from .run import load_run_algorithm

__all__ = ["play_episodes", "write_gif", "play_run"]

MAX_STEPS = 10_000  # a policy that never ends its episode still gives a finite GIF


def play_episodes(algo: Any, episodes: int, seed: int, *, max_steps: int = MAX_STEPS) -> tuple[list, list]:
    """``(frames, returns)``: the RGB frames (H, W, 3 uint8) of ``episodes`` episodes one after
    another, and each episode's return."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen
    env = algo.make_env(seed, render_mode="rgb_array")
    frames, returns = [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            frames.append(np.asarray(env.render()))
            total, steps, done = 0.0, 0, False
            while not done and steps < max_steps:
                action = algo.act(np.asarray(obs)[None], deterministic=True)[0]
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                steps += 1
                done = terminated or truncated
                frames.append(np.asarray(env.render()))
            returns.append(total)
    finally:
        env.close()
    return frames, returns


def write_gif(frames: list, path: str | os.PathLike, fps: int = 30, scale: float = 1.0) -> pathlib.Path:
    """An animated GIF of ``frames`` (looping, ``fps`` frames a second, each frame resized by ``scale``)."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("retrograd rl play needs Pillow: pip install 'retrograd[rl]'") from None
    if not frames:
        raise ConfigError("rl play: the environment rendered no frames")
    images = []
    for f in frames:
        im = Image.fromarray(np.ascontiguousarray(f[..., :3]).astype(np.uint8))
        if scale != 1.0:
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
        images.append(im.convert("P", palette=Image.ADAPTIVE, colors=64))
    out = pathlib.Path(path)
    images[0].save(out, save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0,
                   optimize=False)
    return out


def play_run(run_dir: str | os.PathLike, *, episodes: int = 1, seed: int = 0, output: str | None = None,
             fps: int = 30, scale: float = 1.0) -> dict:
    """Render ``episodes`` episodes of the run's last checkpoint into ``output`` (default RUN/play.gif)."""
    run_dir = pathlib.Path(run_dir)
    out = pathlib.Path(output) if output else run_dir / "play.gif"
    if out.suffix.lower() != ".gif":
        raise ConfigError(f"--output {out}: expected a .gif file name")
    if out.is_dir():
        raise ConfigError(f"--output {out}: is a folder; expected a .gif file name")
    if not out.parent.is_dir():
        raise ConfigError(f"--output {out}: the folder {out.parent} does not exist")
    cfg, algo, state = load_run_algorithm(run_dir, "rl play")
    try:
        frames, returns = play_episodes(algo, episodes, seed)
    finally:
        algo.close()
    write_gif(frames, out, fps=fps, scale=scale)
    print(f"{run_dir}: {plural(episodes, 'episode')} of {cfg['rl']['env']} (last checkpoint, "
          f"{int(state['env_steps']):,} environment steps), return "
          + ", ".join(f"{r:.1f}" for r in returns) + f"; {len(frames)} frames at {fps} fps: {out}")
    return {"path": str(out), "frames": len(frames), "returns": returns}

"""RL run folders: ``retrograd rl CONFIG`` trains an ``rg.rl`` algorithm into one, ``rl resume``
continues it bitwise, ``rl evaluate`` scores its policy (``rl play``: ``retrograd.rl.play``).

A run folder (``run.dir/<run.name or the config's name>``, ``-2``, ``-3`` ... as ``retrograd train``
names them) holds:

- ``config.toml``: the resolved config (``retrograd.rl.config``), every hyperparameter written out;
- ``metrics.jsonl``: one JSON object per iteration (``iteration``, ``env_steps``, ``episodes``, the
  returns and lengths of the episodes that ended in it, ``return_mean``/``return_min``/``return_max``
  over the last ``rl.window`` episodes, the algorithm's own metrics, ``time_s``, ``steps_per_sec``);
  ``metrics.csv``: the same rows without the per-episode lists; ``log.txt``: the lines printed;
- ``tb/``: TensorBoard scalars against environment steps (``rollout/*``, ``train/*``, ``time/*``);
- ``returns.png``: episode return against environment steps: each episode, the mean and the
  min-max band of the last ``rl.window`` episodes;
- ``checkpoints/last``: the algorithm's ``state_dict`` (``algorithm.json`` + ``.safetensors``) and
  the loop's own state (``run.json``), written atomically every ``rl.checkpoint_every`` iterations
  and at the end (``rg.io.checkpoint.atomic_directory``: the previous checkpoint stays until the
  new one is complete);
- ``summary.json``: how the run ended, its steps, time and returns, and the evaluation of the
  final policy (``rl.eval_episodes`` episodes, mean and std), which ``rl evaluate`` repeats on demand
  (``evaluate.json``).
"""
from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import pathlib
import signal
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

from ..accel import get_num_threads, set_num_threads
from ..io.checkpoint import CheckpointError, atomic_directory, load_tree, save_tree, verify_directory
from ..train.formatting import format_duration, plural
from ..train.logfiles import read_jsonl
from ..train.runs import checkpoint_dir, new_run_dir
from .config import ConfigError, build_algorithm, dumps, load_config, validate

__all__ = ["RLRun", "train_run", "resume_run", "evaluate_run", "load_run_algorithm", "plot_returns",
           "returns_figure", "read_rows", "train_for_tune", "RunInterrupted"]

STATE_FILE = "run.json"
LIST_KEYS = ("episode_returns", "episode_lengths")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run; ``message`` says what was saved and how to continue."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def read_rows(run_dir: str | os.PathLike) -> list[dict]:
    """The iteration rows of a run's ``metrics.jsonl`` (a torn last line is dropped with a warning)."""
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    return read_jsonl(path, keys=("iteration", "env_steps")) if path.is_file() else []


def read_run(run_dir: str | os.PathLike, command: str) -> dict:
    """The validated resolved config of an RL run folder."""
    run_dir = pathlib.Path(run_dir)
    path = run_dir / "config.toml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.toml)")
    raw = load_config(path)
    if "rl" not in raw:
        raise ConfigError(f"{run_dir}: not an RL run (its config.toml has no [rl] section); for a run of "
                          f"retrograd train use: retrograd {command} {run_dir}")
    return validate(raw, config_path=path)


def load_run_algorithm(run_dir: str | os.PathLike, command: str = "rl evaluate") -> tuple[dict, Any, dict]:
    """``(config, algorithm, loop state)`` of a run folder, the algorithm at its last checkpoint."""
    run_dir = pathlib.Path(run_dir)
    cfg = read_run(run_dir, command.split()[-1])
    ckpt = checkpoint_dir(run_dir, "last")
    manifest = verify_directory(ckpt)
    state = load_tree(ckpt, "run", files=manifest["files"])
    algo_state = load_tree(ckpt, "algorithm", files=manifest["files"])
    algo = build_algorithm(cfg)
    try:
        algo.load_state_dict(algo_state)
    except (KeyError, ValueError, TypeError) as e:
        algo.close()
        raise CheckpointError(f"{ckpt}: not a checkpoint of this run's {cfg['rl']['algorithm']} on "
                              f"{cfg['rl']['env']} ({type(e).__name__}: {e})") from None
    return cfg, algo, state


# ---------------------------------------------------------------------- the plot
def returns_figure(rows: list[dict], window: int, title: str = "") -> Any:
    """Episode return against environment steps: every episode (dots), and the mean and min-max of
    the last ``window`` episodes after each iteration."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("the return plot needs matplotlib: pip install 'retrograd[train]'") from None
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    xs, means, lows, highs, ep_x, ep_y, recent = [], [], [], [], [], [], []
    for r in rows:
        rets = r.get("episode_returns") or []
        ep_x += [r["env_steps"]] * len(rets)
        ep_y += rets
        recent = (recent + list(rets))[-window:]
        if recent:
            xs.append(r["env_steps"])
            means.append(float(np.mean(recent)))
            lows.append(min(recent))
            highs.append(max(recent))
    if ep_x:
        ax.scatter(ep_x, ep_y, s=4, alpha=0.25, color="tab:gray", label="each episode", linewidths=0)
    if xs:
        ax.fill_between(xs, lows, highs, alpha=0.25, color="tab:blue", linewidth=0,
                        label=f"min-max of the last {window} episodes")
        ax.plot(xs, means, color="tab:blue", label=f"mean of the last {window} episodes")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title or "episode return")
    ax.grid(alpha=0.3)
    if xs or ep_x:
        ax.legend(loc="best", fontsize="small")
    return fig


def plot_returns(run_dir: str | os.PathLike) -> pathlib.Path:
    """Draw ``run_dir/returns.png`` from its ``metrics.jsonl``; returns its path."""
    run_dir = pathlib.Path(run_dir)
    cfg = read_run(run_dir, "plot")
    fig = returns_figure(read_rows(run_dir), cfg["rl"]["window"],
                         f"{cfg['rl']['algorithm'].upper()} on {cfg['rl']['env']} (seed {cfg['rl']['seed']})")
    out = run_dir / "returns.png"
    fig.savefig(out, dpi=100)
    return out


# ---------------------------------------------------------------------- progress
class _Progress:
    """A tqdm bar over environment steps with the recent mean return (on a terminal), else a plain
    line at each tenth of the run; every plain line also goes to ``log.txt``."""

    def __init__(self, total: int, start: int, log: Any, *, enabled: bool, out: Any = None) -> None:
        self.total, self.log, self.enabled = total, log, enabled
        self.out = out or sys.stderr
        self._bar = None
        self._tenth = start * 10 // total
        if enabled and getattr(self.out, "isatty", lambda: False)():
            try:
                from tqdm.auto import tqdm
                self._bar = tqdm(total=total, initial=min(start, total), file=self.out, unit="step",
                                 dynamic_ncols=True, desc="env steps")
            except ImportError:
                pass

    def line(self, text: str, *, show: bool = True) -> None:
        self.log.write(text + "\n")
        self.log.flush()
        if show and self.enabled:
            if self._bar is not None:
                self._bar.write(text, file=self.out)
            else:
                print(text, file=self.out, flush=True)

    def update(self, row: dict, elapsed: float) -> None:
        steps = row["env_steps"]
        ret = "n/a" if row["return_mean"] is None else f"{row['return_mean']:.1f}"
        if self._bar is not None:
            self._bar.set_postfix({"return": ret, "episodes": row["episodes"],
                                   "steps/s": f"{row['steps_per_sec']:.0f}"}, refresh=False)
            self._bar.update(min(steps, self.total) - self._bar.n)
        tenth = min(steps, self.total) * 10 // self.total
        if tenth > self._tenth or steps >= self.total:
            self._tenth = tenth
            left = elapsed / max(row["steps_done"], 1) * max(self.total - steps, 0)
            spread = "" if row["return_mean"] is None else \
                f" (min {row['return_min']:.1f}, max {row['return_max']:.1f})"
            self.line(f"{min(steps, self.total) * 100 // self.total}% ({steps:,}/{self.total:,} steps) iteration "
                      f"{row['iteration']}: return {ret}{spread} over the last {row['window_size']} of "
                      f"{plural(row['episodes'], 'episode')}, {row['steps_per_sec']:,.0f} steps/s | "
                      f"{format_duration(elapsed)} elapsed, {format_duration(left)} left",
                      show=self._bar is None)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# ---------------------------------------------------------------------- the loop
def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(x) for x in v]
    return v


class RLRun:
    """One RL run in ``run_dir``: trains ``algo`` to ``cfg["rl"]["total_steps"]`` environment steps,
    logging every iteration and checkpointing every ``rl.checkpoint_every`` iterations; ``state`` is
    the loop's state at the checkpoint it resumes from (None: a fresh run)."""

    def __init__(self, cfg: dict, algo: Any, run_dir: pathlib.Path, *, state: dict | None = None,
                 quiet: bool = False) -> None:
        self.cfg, self.algo, self.run_dir, self.quiet = cfg, algo, pathlib.Path(run_dir), quiet
        state = state or {}
        self.iteration = int(state.get("iteration", 0))
        self.episodes = int(state.get("episodes", 0))
        self.recent = [float(x) for x in state.get("recent", [])]
        self.time_s = float(state.get("time_s", 0.0))  # training time before this process
        self.saved_iteration = self.iteration if state else None
        self.stop_requested = False

    # -- files
    def _open_logs(self) -> None:
        rows = read_rows(self.run_dir)
        kept = [r for r in rows if r["iteration"] <= self.iteration]  # lines after the checkpoint are redone
        if len(kept) != len(rows) or (self.run_dir / "metrics.jsonl").exists():
            tmp = self.run_dir / "metrics.jsonl.tmp"
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            os.replace(tmp, self.run_dir / "metrics.jsonl")
        self.rows = kept
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a")
        self._log = open(self.run_dir / "log.txt", "a")
        from ..train.tensorboard import EventWriter
        self._tb = EventWriter(self.run_dir / "tb")

    def _close_logs(self) -> None:
        for f in (self._jsonl, self._log):
            f.close()
        self._tb.close()
        self.write_csv()

    def write_csv(self) -> None:
        cols = list(dict.fromkeys(k for r in self.rows for k in r if k not in LIST_KEYS))
        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(self.rows)
        tmp = self.run_dir / "metrics.csv.tmp"
        tmp.write_text(buf.getvalue())
        os.replace(tmp, self.run_dir / "metrics.csv")

    def save_checkpoint(self, elapsed: float = 0.0) -> pathlib.Path:
        """``checkpoints/last`` at this iteration's end (``elapsed``: this process's training time)."""
        path = self.run_dir / "checkpoints" / "last"
        state = {"iteration": self.iteration, "env_steps": int(self.algo.env_steps), "episodes": self.episodes,
                 "recent": list(self.recent), "time_s": round(self.time_s + elapsed, 3)}
        with atomic_directory(path) as tmp:
            save_tree(tmp, "algorithm", self.algo.state_dict())
            save_tree(tmp, "run", state)
        self.saved_iteration = self.iteration
        return path

    # -- one iteration
    def _row(self, info: dict, steps_done: int, elapsed: float) -> dict:
        window = self.cfg["rl"]["window"]
        rets = [float(x) for x in info.get("episode_returns", [])]
        self.episodes += len(rets)
        self.recent = (self.recent + rets)[-window:]
        row = {"iteration": self.iteration, "env_steps": int(info["env_steps"]), "episodes": self.episodes,
               "return_mean": float(np.mean(self.recent)) if self.recent else None,
               "return_min": min(self.recent) if self.recent else None,
               "return_max": max(self.recent) if self.recent else None,
               "window_size": len(self.recent),
               "episode_returns": rets, "episode_lengths": [int(x) for x in info.get("episode_lengths", [])]}
        row.update({k: _jsonable(v) for k, v in (info.get("metrics") or {}).items()})
        row.update({"time_s": round(self.time_s + elapsed, 3),
                    "steps_per_sec": round(steps_done / elapsed, 1) if elapsed > 0 else 0.0})
        return row

    def _log_row(self, row: dict) -> None:
        self.rows.append(row)
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        step = row["env_steps"]
        scalars = {f"train/{k}": v for k, v in row.items() if k not in LIST_KEYS and k not in
                   ("iteration", "env_steps", "episodes", "return_mean", "return_min", "return_max", "window_size",
                    "time_s", "steps_per_sec") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if row["return_mean"] is not None:
            scalars.update({"rollout/return_mean": row["return_mean"], "rollout/return_min": row["return_min"],
                            "rollout/return_max": row["return_max"]})
        scalars.update({"rollout/episodes": row["episodes"], "time/steps_per_sec": row["steps_per_sec"]})
        self._tb.add_scalars(scalars, step)
        for r, n in zip(row["episode_returns"], row["episode_lengths"]):
            self._tb.add_scalars({"rollout/episode_return": r, "rollout/episode_length": n}, step)

    def _on_sigint(self, signum, frame) -> None:  # noqa: ARG002
        if self.stop_requested:  # the second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.stop_requested = True

    def train(self, total_steps: int | None = None, on_iteration: Callable[[dict], bool] | None = None) -> dict:
        """Train to ``total_steps`` (default ``rl.total_steps``) environment steps; returns the summary.
        ``on_iteration(row)`` returning True stops the run early (``retrograd tune``'s pruning)."""
        rl = self.cfg["rl"]
        total = total_steps or rl["total_steps"]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._open_logs()
        start_steps, t0 = int(self.algo.env_steps), time.perf_counter()
        progress = _Progress(total, start_steps, self._log, enabled=rl["progress"] and not self.quiet)
        handler, threads = None, get_num_threads()
        if rl.get("threads"):
            set_num_threads(rl["threads"])
        if threading.current_thread() is threading.main_thread():
            handler = signal.signal(signal.SIGINT, self._on_sigint)
        status, reason = "completed", None
        try:
            progress.line(f"{rl['algorithm']} on {rl['env']}, seed {rl['seed']}: training to {total:,} environment "
                          f"steps" + (f", from iteration {self.iteration} ({start_steps:,} steps)" if start_steps
                                      else ""), show=not self.quiet)
            while self.algo.env_steps < total:
                info = self.algo.train_iteration()
                self.iteration += 1
                elapsed = time.perf_counter() - t0
                row = self._row(info, int(self.algo.env_steps) - start_steps, elapsed)
                self._log_row(row)
                progress.update({**row, "steps_done": int(self.algo.env_steps) - start_steps}, elapsed)
                done = self.algo.env_steps >= total
                stop = on_iteration(row) if on_iteration is not None else False
                if done or stop or self.stop_requested or self.iteration % rl["checkpoint_every"] == 0:
                    self.save_checkpoint(elapsed)
                if stop:
                    status, reason = "stopped", "stopped early by retrograd tune's pruner"
                    break
                if self.stop_requested:
                    raise RunInterrupted(f"interrupted at iteration {self.iteration} ({int(self.algo.env_steps):,} "
                                         f"environment steps); saved a checkpoint there; continue with: retrograd "
                                         f"rl resume {self.run_dir}")
        except KeyboardInterrupt as e:
            if not isinstance(e, RunInterrupted):
                e = RunInterrupted(self._interrupt_text())
            progress.close()
            self._close_logs()
            raise e from None
        finally:
            if handler is not None:
                signal.signal(signal.SIGINT, handler)
            set_num_threads(threads)
        progress.close()
        elapsed = time.perf_counter() - t0
        self.time_s += elapsed
        self._close_logs()
        return self._summary(status, reason, total, elapsed, int(self.algo.env_steps) - start_steps, progress)

    def _interrupt_text(self) -> str:
        if self.saved_iteration is None:
            return ("interrupted before the first checkpoint; nothing can be resumed; start again with: retrograd "
                    f"rl CONFIG (the run folder {self.run_dir} keeps its logs)")
        return (f"interrupted during iteration {self.iteration + 1} without saving; the last checkpoint is at "
                f"iteration {self.saved_iteration} and the training after it is lost; continue with: retrograd rl "
                f"resume {self.run_dir}")

    def _summary(self, status: str, reason: str | None, total: int, elapsed: float, steps: int, progress) -> dict:
        rl = self.cfg["rl"]
        summary = {"run_dir": str(self.run_dir), "algorithm": rl["algorithm"], "env": rl["env"], "seed": rl["seed"],
                   "status": status, "reason": reason, "total_steps": total, "env_steps": int(self.algo.env_steps),
                   "iterations": self.iteration, "episodes": self.episodes, "time_s": round(self.time_s, 3),
                   "steps_per_sec": round(steps / elapsed, 1) if elapsed > 0 else None,
                   "train_return": {"mean": float(np.mean(self.recent)) if self.recent else None,
                                    "min": min(self.recent) if self.recent else None,
                                    "max": max(self.recent) if self.recent else None,
                                    "episodes": len(self.recent)}}
        if rl["eval_episodes"] and status == "completed":
            summary["eval"] = evaluate_algorithm(self.algo, rl["eval_episodes"], rl["eval_seed"])
        try:
            summary["plot"] = str(plot_returns(self.run_dir))
        except ImportError as e:
            summary["plot"] = None
            progress.line(f"(no plot: {e})", show=not self.quiet)
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        with open(self.run_dir / "log.txt", "a") as log:
            text = summary_text(summary)
            log.write(text + "\n")
        if not self.quiet:
            print(text)
        return summary


def summary_text(s: dict) -> str:
    """What ``retrograd rl`` prints at the end of a run."""
    tr = s["train_return"]
    lines = [f"run {s['run_dir']}: {s['algorithm']} on {s['env']}, seed {s['seed']}, {s['env_steps']:,} environment "
             f"steps, {plural(s['iterations'], 'iteration')}, {plural(s['episodes'], 'episode')} in "
             f"{format_duration(s['time_s'])} ({s['time_s']:.1f} s)"]
    if s["status"] != "completed":
        lines.append(f"  {s['status'].upper()}: {s['reason']}")
    if tr["mean"] is not None:
        lines.append(f"  training return, last {tr['episodes']} episodes: mean {tr['mean']:.2f} (min {tr['min']:.2f}, "
                     f"max {tr['max']:.2f})")
    if s.get("eval"):
        e = s["eval"]
        lines.append(f"  evaluation: {e['mean']:.2f} ± {e['std']:.2f} over {plural(e['episodes'], 'episode')} "
                     f"(deterministic policy, seed {e['seed']})")
    if s.get("plot"):
        lines.append(f"  plot: {s['plot']}")
    return "\n".join(lines)


def evaluate_algorithm(algo: Any, episodes: int, seed: int) -> dict:
    """``rg.rl.evaluate`` as a dict: mean, std, min and max return over ``episodes`` episodes."""
    from . import evaluate

    returns = np.asarray(evaluate(algo, episodes=episodes, seed=seed), dtype=np.float64)
    return {"mean": float(returns.mean()), "std": float(returns.std()), "min": float(returns.min()),
            "max": float(returns.max()), "episodes": int(returns.size), "seed": int(seed),
            "returns": [float(x) for x in returns]}


# ---------------------------------------------------------------------- the commands
def train_run(cfg: dict, config_path: str, *, quiet: bool = False) -> dict:
    """``retrograd rl CONFIG``: build the algorithm (a bad hyperparameter is refused before any
    folder is made), make the run folder, train, evaluate."""
    algo = build_algorithm(cfg)
    try:
        run_dir = new_run_dir(cfg, config_path, command="rl")
        (run_dir / "config.toml").write_text(dumps(cfg))
        if not quiet:
            print(f"run folder: {run_dir}")
        return RLRun(cfg, algo, run_dir, quiet=quiet).train()
    finally:
        algo.close()


def finished(run_dir: pathlib.Path, state: dict, total: int) -> bool:
    try:
        s = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return s.get("status") == "completed" and s.get("env_steps") == state.get("env_steps") and \
        int(state.get("env_steps", 0)) >= total


def resume_run(run_dir: str | os.PathLike, *, total_steps: int | None = None, quiet: bool = False) -> dict:
    """``retrograd rl resume RUN [--total-steps N]``: continue from ``checkpoints/last``, bitwise as if
    never interrupted; a finished run is left as it is (unless ``total_steps`` asks for more)."""
    run_dir = pathlib.Path(run_dir)
    cfg, algo, state = load_run_algorithm(run_dir, "rl resume")
    try:
        if total_steps is not None:
            if total_steps < int(state["env_steps"]):
                raise ConfigError(f"--total-steps {total_steps}: the run's last checkpoint is already at "
                                  f"{int(state['env_steps']):,} environment steps; give more")
            cfg["rl"]["total_steps"] = total_steps
        total = cfg["rl"]["total_steps"]
        if finished(run_dir, state, total):
            print(f"{run_dir}: the run is complete ({int(state['env_steps']):,} of {total:,} environment steps); "
                  f"nothing to resume, nothing changed (to train longer: retrograd rl resume {run_dir} "
                  f"--total-steps N)")
            return {"status": "complete", "run_dir": str(run_dir)}
        if not quiet:
            print(f"resuming {run_dir} from iteration {state['iteration']} ({int(state['env_steps']):,} steps)")
        (run_dir / "config.toml").write_text(dumps(cfg))
        return RLRun(cfg, algo, run_dir, state=state, quiet=quiet).train()
    finally:
        algo.close()


def evaluate_run(run_dir: str | os.PathLike, *, episodes: int = 100, seed: int | None = None) -> dict:
    """``retrograd rl evaluate RUN``: the last checkpoint's deterministic policy over ``episodes``
    episodes (seed: the config's ``rl.eval_seed``); printed and written to ``evaluate.json``."""
    run_dir = pathlib.Path(run_dir)
    cfg, algo, state = load_run_algorithm(run_dir, "rl evaluate")
    try:
        seed = cfg["rl"]["eval_seed"] if seed is None else seed
        result = {"checkpoint": "last", "iteration": state["iteration"], "env_steps": int(state["env_steps"]),
                  **evaluate_algorithm(algo, episodes, seed)}
    finally:
        algo.close()
    (run_dir / "evaluate.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{run_dir} (last checkpoint, {result['env_steps']:,} environment steps): return {result['mean']:.2f} ± "
          f"{result['std']:.2f} over {plural(episodes, 'episode')} (min {result['min']:.2f}, max {result['max']:.2f}; "
          f"seed {seed})")
    return result


def train_for_tune(cfg: dict, report: Callable[[int, dict], bool]) -> dict:
    """Train a trial's validated RL config without a run folder's extras for ``retrograd tune``:
    ``report(tenth, {"eval_return_mean": recent training return})`` at each tenth of the run (True
    prunes it); returns ``eval_return_mean``/``eval_return_std`` of the final policy (``rl.eval_episodes``
    episodes, at least 1) and the last training return."""
    import tempfile

    rl = cfg["rl"]
    algo = build_algorithm(cfg)
    try:
        with tempfile.TemporaryDirectory(prefix="retrograd-rl-trial-") as tmp:
            run = RLRun({**cfg, "rl": {**rl, "progress": False, "checkpoint_every": 2**62}}, algo,
                        pathlib.Path(tmp), quiet=True)
            tenth = [0]

            def on_iteration(row: dict) -> bool:
                t = min(row["env_steps"], rl["total_steps"]) * 10 // rl["total_steps"]
                if t > tenth[0] and row["return_mean"] is not None:
                    tenth[0] = t
                    return bool(report(t, {"eval_return_mean": row["return_mean"]}))
                return False

            run.save_checkpoint = lambda elapsed=0.0: None  # a trial keeps no checkpoint
            run._summary = lambda *a, **k: None
            run.train(on_iteration=on_iteration)
        ev = evaluate_algorithm(algo, max(rl["eval_episodes"], 1), rl["eval_seed"])
    finally:
        algo.close()
    out = {"eval_return_mean": ev["mean"], "eval_return_std": ev["std"]}
    if run.recent:
        out["train_return_mean"] = float(np.mean(run.recent))
    return out if math.isfinite(ev["mean"]) else {k: math.nan for k in out}

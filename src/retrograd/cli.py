"""The ``retrograd`` command: train, resume, evaluate, compare optimizers, find a
learning rate, plot a run and sample text from a trained GPT, all from a TOML config.

    retrograd train examples/fashion_mlp.toml --set optim.lr=0.002
    retrograd train examples/fashion_mlp.toml --nproc 4      # 4 data-parallel ranks (MPI; or under mpiexec)
    retrograd resume runs/fashion_mlp
    retrograd evaluate runs/fashion_mlp --checkpoint best
    retrograd compare examples/fashion_mlp.toml --optimizers sgd,momentum,adam,adamw
    retrograd lr-find examples/fashion_mlp.toml
    retrograd plot runs/fashion_mlp
    retrograd generate runs/shakespeare_gpt --prompt "ROMEO:" --max-new-tokens 200 --temperature 0.8
    retrograd predict runs/fashion_mlp x_new.npy -o predictions.csv
    retrograd export runs/fashion_cnn --format onnx --quantize int8
    retrograd rl examples/rl_cartpole_ppo.toml               # reinforcement learning (rg.rl, gymnasium)
    retrograd rl play runs/rl_cartpole_ppo --output cartpole.gif

A run folder holds ``config.toml`` (the resolved config: every default and
every value derived from the data written out, so ``resume`` and ``evaluate``
rebuild exactly the same run), the metrics log, ``checkpoints/{best,last}``,
plots and ``summary.json``. See ``retrograd.train.config`` for the config keys, the README's
"What a run folder guarantees" for crashes and exit statuses, and ``retrograd.train.model_code``
for the check of a model file (``m.py:MLP``) before ``resume``/``evaluate``/``generate`` import it.

This module parses arguments and runs one command per subcommand; the runs themselves are
built by ``retrograd.train.recipe`` (run folders: ``retrograd.train.runs``).
"""
from __future__ import annotations

import argparse
import copy
import io
import itertools
import json
import os
import pathlib
import sys
import time
from typing import Sequence

import numpy as np

from .data import DataNotInstalledError
from .data.presets import build_data
from .data.text import Vocabulary
from .random import Generator
from .tensor import Tensor
from .io.checkpoint import CheckpointError
from .train.config import (ConfigError, apply_overrides, default_lr, dumps, load_config, optim_lr,
                           optimizer_class, optimizer_names, validate, validate_optim, with_lr)
from .train.formatting import format_duration, format_value, markdown_table, plural
from .train.model_code import record_model_code
from .train.model_summary import show_model
from .train.predict import load_run, write_predictions
from .train.recipe import data_seed, make_trainer, prepare
from .train.recipe import fit as fit_run
from .train.runs import (check_schedule_length, checkpoint_dir, final_metrics, finish_run, finished_run, jsonable, new_run_dir,
                         prefixed_metrics, read_run_config)
from .train.step_timing import TimedRun, interleaved_step_times
from .train.rank_data import effective_batch_text
from .train.ranks import RankMismatchError, env_world_size, from_environment
from .train.ranks import start as start_ranks
from .train.launch import note_rank

__all__ = ["main", "build_parser"]

# learning rates `compare` gives optimizers the config does not configure
COMPARE_LRS = {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "adam": 1e-3, "adamw": 1e-3, "nadam": 1e-3,
               "radam": 1e-3, "adamax": 2e-3, "lion": 1e-4, "rmsprop": 1e-3, "adagrad": 1e-2, "muon": 1e-2}


# ---------------------------------------------------------------------- commands
def _config_from_args(args) -> dict:
    raw = apply_overrides(load_config(args.config), args.set or [])
    return validate(raw, config_path=args.config)


def _check_checkpoint_package(cfg: dict) -> None:
    """Checkpoints need safetensors: say so before training, not at the end of the first epoch."""
    if cfg["train"]["save_best"] or cfg["train"]["save_last"]:
        try:
            import safetensors.numpy  # noqa: F401
        except ImportError:
            raise ConfigError("checkpoints need the 'safetensors' package: pip install 'retrograd[train]' (or "
                              "safetensors); or turn them off with train.save_best = false and "
                              "train.save_last = false") from None


def _write_inputs(run_dir: pathlib.Path, setup) -> None:
    """``inputs.json``: how raw inputs become this run's model inputs (``rg.data.inputs.InputSpec``)."""
    if setup.data.inputs is not None:
        (run_dir / "inputs.json").write_text(json.dumps(setup.data.inputs.to_dict(), indent=1) + "\n")


def _join_ranks(args, cfg: dict):
    """The data-parallel ranks this process is one of (``retrograd.train.ranks``; one process when
    not started by mpiexec), with the time limit of ``--rank-timeout`` or ``train.rank_timeout``."""
    if args.rank_timeout is not None:
        cfg["train"]["rank_timeout"] = args.rank_timeout
    ranks = from_environment(cfg["train"]["rank_timeout"], args.command)
    args.ranks = ranks
    if ranks.size > 1:
        note_rank(ranks.rank, "pid", os.getpid())  # for --nproc's launcher: who died, if one does
    if args.nproc is not None and args.nproc != ranks.size:
        raise ConfigError(f"--nproc {args.nproc}: this process is one of {ranks.size} ranks started by mpiexec; "
                          f"leave --nproc out under mpiexec (or give --nproc {ranks.size})")
    return ranks


def cmd_train(args, extra_callbacks: Sequence = ()) -> dict:
    cfg = _config_from_args(args)
    _check_checkpoint_package(cfg)
    t0 = time.perf_counter()
    ranks = _join_ranks(args, cfg)
    lead = ranks.rank == 0
    setup = prepare(cfg, config_path=args.config, ranks=ranks)
    start_ranks(ranks, setup, build_parser.version, fresh=True)
    run_dir = new_run_dir(cfg, args.config, command="train") if lead else None
    run_dir = pathlib.Path(ranks.bcast(str(run_dir), "the run folder's name"))
    cfg["run"]["name"] = run_dir.name
    args.active_run_dir = run_dir  # for the message after Ctrl-C
    if lead:
        (run_dir / "config.toml").write_text(dumps(cfg))
        _write_inputs(run_dir, setup)
        record_model_code(run_dir, cfg)
        if setup.data.vocab is not None:
            (run_dir / "vocab.json").write_text(json.dumps(setup.data.vocab.itos))
        print(f"run folder: {run_dir}")
        if ranks.size > 1:
            print(effective_batch_text(ranks, cfg))
        show_model(setup, quiet=args.quiet, run_dir=run_dir)
    trainer = args.active_trainer = make_trainer(setup, run_dir, quiet=args.quiet, extra_callbacks=extra_callbacks)
    history = fit_run(trainer, setup)
    test = _rank_test_metrics(setup, trainer)
    if not lead:
        return {"status": "rank", "rank": ranks.rank, "failed": trainer.failure is not None}
    return finish_run(setup, trainer, history, run_dir, time.perf_counter() - t0, test=test)


def _rank_test_metrics(setup, trainer) -> dict | None:
    """With several ranks, the test set's metrics, evaluated by every rank together (split over them);
    None in one process (``finish_run`` evaluates)."""
    if setup.ranks is None or setup.test_loader is None:
        return None
    return prefixed_metrics(trainer.evaluate(setup.test_loader), "test")


def cmd_resume(args, extra_callbacks: Sequence = ()) -> dict:
    run_dir = pathlib.Path(args.run_dir)
    cfg = read_run_config(run_dir, trust_model_code=args.trust_model_code, command="resume")
    planned = cfg["train"]["epochs"]
    if args.epochs is not None:
        cfg["train"]["epochs"] = args.epochs
    ckpt = checkpoint_dir(run_dir, "last")
    done = finished_run(run_dir, ckpt, cfg["train"]["epochs"], args.epochs is not None)
    if done is not None:  # nothing to train: the folder stays as it is, byte for byte
        print(f"{run_dir}: the run is {done}; nothing to resume, nothing changed (to train longer: "
              f"retrograd resume {run_dir} --epochs N)")
        return {"status": "complete", "run_dir": str(run_dir), "reason": done}
    t0 = time.perf_counter()
    ranks = _join_ranks(args, cfg)
    lead = ranks.rank == 0
    setup = prepare(cfg, ranks=ranks, init_weights=False)  # the checkpoint has every weight
    start_ranks(ranks, setup, build_parser.version, fresh=False)  # every rank loads the same checkpoint
    if lead and not (run_dir / "inputs.json").is_file():  # a run from before inputs.json existed
        _write_inputs(run_dir, setup)
    if args.epochs is not None and lead:
        for note in check_schedule_length(setup, args.epochs, "resume", planned):
            print(f"retrograd resume: note: {note}", file=sys.stderr)
    args.active_run_dir = run_dir  # for the message after Ctrl-C
    if lead:
        print(f"resuming {run_dir} from {ckpt}")
        if ranks.size > 1:
            print(effective_batch_text(ranks, cfg))
        show_model(setup, quiet=args.quiet)
    trainer = args.active_trainer = make_trainer(setup, run_dir, quiet=args.quiet, extra_callbacks=extra_callbacks)
    history = fit_run(trainer, setup, resume_from=str(ckpt))
    test = _rank_test_metrics(setup, trainer)
    if not lead:
        return {"status": "rank", "rank": ranks.rank, "failed": trainer.failure is not None}
    (run_dir / "config.toml").write_text(dumps(cfg))
    return finish_run(setup, trainer, history, run_dir, time.perf_counter() - t0, test=test)


def cmd_evaluate(args) -> dict:
    run_dir = pathlib.Path(args.run_dir)
    cfg = read_run_config(run_dir, trust_model_code=args.trust_model_code, command="evaluate")
    setup = prepare(cfg, init_weights=False)
    trainer = make_trainer(setup, None, quiet=True, checkpoints=False)
    trainer.load_checkpoint(str(checkpoint_dir(run_dir, args.checkpoint)))
    result = {"checkpoint": args.checkpoint}
    for split, loader in (("val", setup.val_loader), ("test", setup.test_loader)):
        if loader is not None:
            result.update(prefixed_metrics(trainer.evaluate(loader), split))
    (run_dir / f"evaluate_{args.checkpoint}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{run_dir} ({args.checkpoint}): " + "  ".join(f"{k} {format_value(v, fixed=True)}"
                                                          for k, v in result.items() if k != "checkpoint"))
    return result


def _parse_lrs(text: str | None) -> dict[str, float]:
    out = {}
    for item in filter(None, (text or "").split(",")):
        if "=" not in item:
            raise ConfigError(f"--lr {text!r}: expected name=value pairs, e.g. sgd=0.05,adam=0.001")
        k, v = item.split("=", 1)
        try:
            out[k.strip().lower()] = float(v)
        except ValueError:
            raise ConfigError(f"--lr: {k}={v!r} is not a number") from None
        if not 0 <= out[k.strip().lower()] < float("inf"):
            raise ConfigError(f"--lr: {k}={v!r}: expected a finite number >= 0")
    return out


def _time_steps(rows: list[dict], timed: dict, loader, rounds: int) -> str:
    """``step_ms`` of each row (``rg.train.step_timing``: the optimizers take turns on the same 5
    batches of ``loader``); returns what the column measured, or why it is missing (the runs'
    results are kept whatever the timing does)."""
    batches = list(itertools.islice(iter(loader), 5))
    try:
        step_s = interleaved_step_times(timed, batches, rounds=rounds)
    except Exception as e:  # noqa: BLE001
        return f"not measured: {type(e).__name__}: {e}"
    for row in rows:
        row["step_ms"] = round(step_s[row["optimizer"]] * 1e3, 3)
    return (f"median time of one training step (forward, backward, optimizer step) after training, on the "
            f"same {plural(len(batches), 'batch', 'batches')} for every optimizer, the optimizers taking turns "
            f"({plural(rounds, 'round')})")


def cmd_compare(args) -> dict:
    base = _config_from_args(args)
    names = [n.strip().lower() for n in args.optimizers.split(",") if n.strip()]
    if not names:
        raise ConfigError("--optimizers: give a comma-separated list, e.g. sgd,momentum,adam")
    for n in names:  # all names checked before any training
        try:
            optimizer_class(n)
        except ConfigError:
            raise ConfigError(f"--optimizers: {n!r} is not an optimizer in rg.optim; available: "
                              f"{', '.join(optimizer_names())}") from None
    lrs = _parse_lrs(args.lr)
    for n in lrs:
        if n not in names:
            raise ConfigError(f"--lr: {n!r} is not one of --optimizers ({', '.join(names)})")
    data = build_data(base["data"], data_seed(base))
    out_dir = new_run_dir(copy.deepcopy(base) | {"run": {**base["run"], "name": (base["run"]["name"] or
                                                   pathlib.Path(args.config).stem) + "-compare"}}, args.config)
    histories, rows, timed = {}, [], {}
    t_start = time.perf_counter()
    for i, n in enumerate(names):
        cfg = copy.deepcopy(base)
        if n != base["optim"]["name"]:
            cfg["optim"] = validate_optim(with_lr({"name": n}, lrs.get(n, COMPARE_LRS.get(n, default_lr(n)))))
        elif n in lrs:
            cfg["optim"] = with_lr(cfg["optim"], lrs[n])
        setup = prepare(cfg, data, config_path=args.config)
        run_dir = out_dir / n
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(dumps(cfg))
        if i == 0:
            show_model(setup, quiet=args.quiet, run_dir=out_dir)
        progress = f", {i + 1} of {len(names)}" if len(names) > 1 else ""
        if i:  # the time left for the whole comparison, at the mean time per optimizer so far
            spent = time.perf_counter() - t_start
            progress += (f" | compare {format_duration(spent)} elapsed, about "
                         f"{format_duration(spent / i * (len(names) - i))} left")
        print(f"== {n} (lr {optim_lr(cfg['optim'])}){progress}")
        trainer = make_trainer(setup, run_dir, quiet=args.quiet, checkpoints=False)
        t0 = time.perf_counter()
        history = fit_run(trainer, setup)
        elapsed = time.perf_counter() - t0
        histories[n] = history
        row = {"optimizer": n, "lr": optim_lr(cfg["optim"]), **final_metrics(history)}
        if setup.test_loader is not None:
            row.update(prefixed_metrics(trainer.evaluate(setup.test_loader), "test"))
        row["wall_time_s"] = round(elapsed, 2)
        rows.append(row)
        timed[n] = TimedRun(setup.model, setup.optimizer, setup.loss_fn, cfg["train"]["grad_clip"])
    legend = {"wall_time_s": "each optimizer's whole run (training, evaluation, logging), the runs one after "
                             "another, so under whatever else loaded the machine at the time"}
    if args.timed_steps:
        legend["step_ms"] = _time_steps(rows, timed, setup.train_loader, args.timed_steps)
    from .train import plots as tplots

    plot_path = out_dir / "comparison.png"
    tplots.plot_comparison(histories, str(plot_path))
    table = markdown_table(rows)
    notes = "\n".join(f"{k}: {v}" for k, v in legend.items())
    (out_dir / "comparison.md").write_text(f"{table}\n\n{notes}\n")
    (out_dir / "comparison.json").write_text(json.dumps({"rows": rows, "columns": legend,
                                                         "histories": jsonable(histories)}, indent=2) + "\n")
    print(f"{table}\n\n{notes}")
    print(f"plot: {plot_path}")
    return {"dir": str(out_dir), "rows": rows, "plot": str(plot_path)}


def cmd_lr_find(args) -> dict:
    from .train import LRFinder

    if not args.start_lr < args.end_lr:
        raise ConfigError(f"--start-lr {args.start_lr:g} must be below --end-lr {args.end_lr:g}")
    cfg = _config_from_args(args)
    cfg.pop("schedule", None)  # the range test sets the lr itself
    out = pathlib.Path(args.out) if args.out else \
        pathlib.Path(cfg["run"]["dir"]) / f"{cfg['run']['name'] or pathlib.Path(args.config).stem}-lr_finder.png"
    try:  # before the range test: a path that cannot be written is said at once
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{'--out' if args.out else 'run.dir'}: cannot make the folder {out.parent} "
                          f"({e.strerror}: {e.filename})") from None
    setup = prepare(cfg, config_path=args.config)
    finder = LRFinder(setup.model, setup.optimizer, setup.loss_fn)
    finder.range_test(setup.train_loader, start_lr=args.start_lr, end_lr=args.end_lr, num_iter=args.num_iter)
    skip_start = min(10, max(0, len(finder.history["lr"]) // 10))
    lr = finder.suggestion(skip_start=skip_start, skip_end=min(5, len(finder.history["lr"]) // 10))
    try:
        finder.plot(path=str(out), skip_start=skip_start, skip_end=min(5, len(finder.history["lr"]) // 10))
        plot = str(out)
    except ImportError as e:
        plot = None
        print(f"(no plot: {e})")
    out.with_suffix(".json").write_text(json.dumps({"suggested_lr": lr, **finder.history}, indent=2) + "\n")
    print(f"suggested lr: {lr:.3g} ({cfg['optim']['name']}, {plural(len(finder.history['lr']), 'iteration')}"
          f"{', stopped at divergence' if finder.diverged else ''})" + (f"; plot: {plot}" if plot else ""))
    return {"suggested_lr": lr, "plot": plot, "history": finder.history}


def cmd_plot(args) -> list:
    from .train import plots as tplots

    run_dir = pathlib.Path(args.run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run folder")
    try:
        if (run_dir / "config.toml").is_file() and "rl" in load_config(run_dir / "config.toml"):  # retrograd rl's
            from .rl.run import plot_returns
            made = [plot_returns(run_dir)]
        elif not (run_dir / "metrics.jsonl").is_file() and (run_dir / "comparison.json").is_file():
            made = [_plot_comparison_folder(run_dir, tplots)]  # the folder `compare` writes
        elif not (run_dir / "metrics.jsonl").is_file():
            raise ConfigError(f"{run_dir}: nothing to plot: neither a run folder (metrics.jsonl) nor a folder "
                              f"that retrograd compare wrote (comparison.json)")
        elif not any(tplots.read_metrics(run_dir)):
            raise ConfigError(f"{run_dir / 'metrics.jsonl'}: nothing to plot: no metrics recorded")
        else:
            made = tplots.plot_run(str(run_dir))
    except ImportError as e:  # matplotlib
        raise ConfigError(str(e)) from None
    made = [str(p) for p in (made if isinstance(made, (list, tuple)) else [made]) if p]
    for p in made:
        print(p)
    return made


def _plot_comparison_folder(folder: pathlib.Path, tplots) -> str:
    """Redraw ``comparison.png`` of a ``retrograd compare`` folder from its ``comparison.json``."""
    try:
        histories = json.loads((folder / "comparison.json").read_text())["histories"]
        path = folder / "comparison.png"
        tplots.plot_comparison(histories, str(path))
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{folder / 'comparison.json'}: cannot plot it ({type(e).__name__}: {e})") from None
    return str(path)


def cmd_generate(args) -> str:
    run_dir = pathlib.Path(args.run_dir)
    cfg = read_run_config(run_dir, trust_model_code=args.trust_model_code, command="generate", data_files=False)
    vocab_path = run_dir / "vocab.json"
    if not vocab_path.is_file():
        raise ConfigError(f"{run_dir}: no vocab.json; generate needs a run of a language model on text "
                          f"(model gpt, data shakespeare), this one is {cfg['model']['name']} on "
                          f"{cfg['data']['name'] or cfg['data']['path']}; for its predictions: retrograd predict "
                          f"{run_dir} INPUT")
    try:
        vocab = Vocabulary(json.loads(vocab_path.read_text()))
    except (ValueError, TypeError) as e:  # a torn or edited file
        raise ConfigError(f"{vocab_path}: not a vocabulary written by retrograd train ({type(e).__name__}: {e})") \
            from None
    model = load_run(run_dir, args.checkpoint, trust_model_code=args.trust_model_code, command="generate").model
    if not hasattr(model, "generate"):
        raise ConfigError(f"{run_dir}: model {cfg['model']['name']} has no generate()")
    try:
        ids = vocab.encode(args.prompt)
    except KeyError as e:
        raise ConfigError(f"--prompt: {e.args[0]}") from None
    if not ids:
        raise ConfigError("--prompt: must not be empty")
    idx = Tensor(np.asarray([ids], dtype=np.int64))
    out = model.generate(idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         generator=Generator(args.seed))
    text = vocab.decode(out[0])
    print(text)
    return text


def cmd_predict(args) -> dict:
    run_dir = pathlib.Path(args.run_dir)
    run = load_run(run_dir, args.checkpoint, trust_model_code=args.trust_model_code, command="predict")
    if run.task == "language_model":
        d = run.config["data"]
        raise ConfigError(f"{run_dir} is a language model ({run.config['model']['name']} on "
                          f"{d['name'] or d['path']}); to sample text from it use: retrograd generate "
                          f"{run_dir} --prompt TEXT")
    src = pathlib.Path(args.input)
    x, ids = run.read_inputs(src)
    out = pathlib.Path(args.out) if args.out else run_dir / f"predictions_{src.stem}.csv"
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise ConfigError(f"-o {out}: is the input file; choose another name")
    d = run.config["data"]
    result = write_predictions(run, x, ids, out, args.batch_size or d["eval_batch_size"] or max(d["batch_size"], 500))
    print(f"{run_dir}: {run.describe()}")
    print(f"wrote {result['rows']} predictions of {src} to {', '.join(result['files'])} "
          f"(columns: {', '.join(result['columns'])})")
    return result


def cmd_export(args) -> dict:
    from .train.export import export_run  # loads onnx only when asked
    result = export_run(args.run_dir, args.output, fmt=args.format, quantize=args.quantize,
                        checkpoint=args.checkpoint, opset_version=args.opset,
                        trust_model_code=args.trust_model_code)
    diff, kind = result["max_abs_diff"], "int8 weights" if args.quantize else "float32"
    axes = "batch and sequence axes" if result["task"] == "language_model" else "batch axis"
    print(f"{args.run_dir}: {result['checkpoint']}")
    print(f"wrote {result['path']} ({result['bytes'] / 1e6:.2f} MB, {kind}; input 'input' {result['inputs']} "
          f"with a dynamic {axes}, output 'output')"
          + ("" if diff is None else f"; onnxruntime vs retrograd on other inputs: max |diff| {diff:.3g}"))
    return result


# ---------------------------------------------------------------------- rl
RL_VERBS = ("resume", "evaluate", "play")
# the flags each form of `retrograd rl` takes (argparse holds them all; the others are refused by name)
RL_FLAGS = {"train": ("set", "quiet"), "resume": ("quiet", "total_steps"), "evaluate": ("episodes", "seed"),
            "play": ("episodes", "seed", "output", "fps", "scale")}


def cmd_rl(args) -> dict:
    """``retrograd rl CONFIG`` | ``rl resume RUN`` | ``rl evaluate RUN`` | ``rl play RUN`` (``retrograd.rl.run``)."""
    verb, target = _rl_target(args.target, args.run_dir)
    for flag in ("set", "quiet", "total_steps", "episodes", "seed", "output", "fps", "scale"):
        if getattr(args, flag) not in (None, False) and flag not in RL_FLAGS[verb]:
            form = "rl CONFIG" if verb == "train" else f"rl {verb} RUN"
            raise ConfigError(f"--{flag.replace('_', '-')}: not for retrograd {form}; it takes: "
                              + (", ".join(f"--{f.replace('_', '-')}" for f in RL_FLAGS[verb])))
    from .rl import config as rlconfig
    from .rl import run as rlrun

    try:
        if verb == "train":
            cfg = rlconfig.validate(rlconfig.apply_overrides(load_config(target), args.set or []),
                                    config_path=target)
            return rlrun.train_run(cfg, target, quiet=args.quiet)
        if verb == "resume":
            return rlrun.resume_run(target, total_steps=args.total_steps, quiet=args.quiet)
        if verb == "evaluate":
            return rlrun.evaluate_run(target, episodes=args.episodes or 100, seed=args.seed)
        from .rl.play import play_run
        return play_run(target, episodes=args.episodes or 1, seed=args.seed or 0, output=args.output,
                        fps=args.fps or 30, scale=args.scale or 1.0)
    except KeyboardInterrupt as e:
        args.interrupt_text = e.message if isinstance(e, rlrun.RunInterrupted) else (
            "interrupted outside the training loop (before its first iteration, or after its last checkpoint); "
            "a run folder with checkpoints/last continues with: retrograd rl resume RUN")
        raise


def _rl_target(target: str, run_dir: str | None) -> tuple[str, str]:
    if target in RL_VERBS:
        if run_dir is None:
            raise ConfigError(f"rl {target}: expected a run folder, e.g. retrograd rl {target} runs/rl_cartpole_ppo")
        return target, run_dir
    if run_dir is not None:
        raise ConfigError(f"rl: expected a config, or one of {', '.join(RL_VERBS)} and a run folder; got "
                          f"{target!r} {run_dir!r}")
    return "train", target


# ---------------------------------------------------------------------- tune
def cmd_tune(args):
    """``retrograd tune CONFIG`` (the config's ``[search]`` table declares the space and the settings;
    ``--workers``/``--storage``/``--resume`` override them) or ``retrograd tune --show STUDY_DIR``."""
    try:
        from . import tune
    except ImportError as e:  # Optuna is not installed
        raise ConfigError(str(e)) from None

    if args.show:
        try:
            return tune.show(args.show, storage=args.storage)
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from None
    if not args.config:
        raise ConfigError("tune: give a config with a [search] table, or --show STUDY_DIR")
    raw = load_config(args.config)
    table = raw.pop("search", None)
    if not table:
        raise ConfigError(f'[search]: {args.config} has no [search] table; add e.g. [search] with '
                          f'"optim.lr" = {{log_uniform = [1e-5, 1e-1]}}')
    rl = "rl" in raw  # an RL config (retrograd rl): the objective is the mean evaluation return
    if rl:
        from .rl import config as rlconfig
        base = rlconfig.validate(rlconfig.apply_overrides(raw, args.set or []), config_path=args.config)
    else:
        base = validate(apply_overrides(raw, args.set or []), config_path=args.config)
    try:
        settings, space = tune.split_search_table(table)
        for name in tune.parse_space(space).names:
            if name.split(".")[0] not in base:
                raise ConfigError(f"search.{name}: [{name.split('.')[0]}] is not a config section; known: "
                                  f"{', '.join(base)}")
        stem = pathlib.Path(args.config).stem
        study_dir = settings.get("study_dir") or pathlib.Path(base["run"]["dir"]) / f"{base['run']['name'] or stem}-tune"
        kwargs = {k: settings[k] for k in ("method", "n_trials", "timeout", "metric", "direction", "pruner", "seed")
                  if k in settings}
        kwargs.setdefault("metric", "eval_return_mean" if rl else
                          "val_accuracy" if "accuracy" in base["train"]["metrics"] else "val_loss")
        kwargs.setdefault("direction", "minimize" if "loss" in kwargs["metric"] else "maximize")
        if args.n_trials is not None:
            kwargs["n_trials"] = args.n_trials
        if rl:
            train_fn = tune.RLTuneFn(args.config)
        else:
            base["data"]["seed"] = data_seed(base)  # every trial, and the best config, on the base config's split
            train_fn = tune.TuneTrainFn(args.config, base["data"]["seed"], quiet=True)
        return tune.search(base, space, train_fn=train_fn,
                           storage=args.storage or settings.get("storage"), study_dir=study_dir,
                           study_name=settings.get("study_name") or stem,
                           workers=args.workers or settings.get("workers", 1), resume=args.resume, **kwargs)
    except tune.TuneError as e:
        raise ConfigError(str(e)) from None


# ---------------------------------------------------------------------- argument parsing
def _number(kind: type, low: float, what: str, *, above: bool = False):
    """An argparse type: a finite ``kind`` >= ``low`` (> ``low`` with ``above``); argparse's error names the flag."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v != v or v in (float("inf"), float("-inf")) or v < low or (above and v == low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    parse.__name__ = what  # argparse names the type by it
    return parse


_POSITIVE_INT = _number(int, 1, "an int >= 1")
_POSITIVE_FLOAT = _number(float, 0, "a finite number > 0", above=True)


def _trust_flag(sp) -> None:
    sp.add_argument("--trust-model-code", action="store_true",
                    help="import the run's model file (m.py:Class) even when it changed since training or the "
                         "folder came from elsewhere (see retrograd.train.model_code); it runs as Python code")


def _quiet_flag(sp) -> None:
    sp.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_dir_arg(sp, what: str, example: str = "runs/fashion_mlp") -> None:
    sp.add_argument("run_dir", help=f"the run folder to {what}, e.g. {example}")


def _checkpoint_arg(sp, what: str) -> None:
    sp.add_argument("--checkpoint", choices=("best", "last"), default="best",
                    help=f"which checkpoint to {what}: best (by train.monitor) or last (default: best)")


def _rank_flags(sp) -> None:
    sp.add_argument("--nproc", type=_POSITIVE_INT, metavar="N",
                    help="data-parallel: start N local ranks through the installed MPI's mpiexec (on several "
                         "machines, run mpiexec -n N --hostfile H retrograd ... yourself); see the README's "
                         "'Training on several processes and machines'")
    sp.add_argument("--rank-timeout", type=_POSITIVE_FLOAT, metavar="SECONDS",
                    help="data-parallel: seconds a rank waits for the others in one collective before it "
                         "names the ranks that hung or died and stops all of them (default: train.rank_timeout, 60)")


def _rl_parser(sub) -> None:
    rl = sub.add_parser("rl", help="reinforcement learning on gymnasium: train from an RL config, resume, "
                        "evaluate, play a policy as a GIF", description="retrograd rl CONFIG trains (rg.rl: "
                        "reinforce, a2c, ppo, dqn) into a run folder; retrograd rl resume|evaluate|play RUN "
                        "works on one. See examples/rl_*.toml and the README's 'Reinforcement learning'.")
    rl.add_argument("target", metavar="CONFIG | {resume,evaluate,play}",
                    help="an RL config to train (e.g. examples/rl_cartpole_ppo.toml), or resume (continue from "
                         "the last checkpoint, bitwise as if never stopped), evaluate (mean ± std return of the "
                         "deterministic policy) or play (render episodes into a GIF), then RUN")
    rl.add_argument("run_dir", nargs="?", metavar="RUN", help="resume, evaluate, play: the run folder, e.g. "
                    "runs/rl_cartpole_ppo")
    rl.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                    help="training: override a config value (repeatable), e.g. --set rl.total_steps=20000")
    _quiet_flag(rl)
    rl.add_argument("--total-steps", type=_POSITIVE_INT, metavar="N",
                    help="resume: train to N environment steps in total (default: the config's rl.total_steps)")
    rl.add_argument("--episodes", type=_POSITIVE_INT, metavar="N",
                    help="evaluate: episodes to average (default: 100); play: episodes to render (default: 1)")
    rl.add_argument("--seed", type=_number(int, 0, "an int >= 0"), metavar="S",
                    help="evaluate, play: episode i is reset with seed S + i (default: evaluate rl.eval_seed, play 0)")
    rl.add_argument("--output", "-o", metavar="GIF", help="play: the GIF to write (default: RUN/play.gif)")
    rl.add_argument("--fps", type=_POSITIVE_INT, help="play: frames per second of the GIF (default: 30)")
    rl.add_argument("--scale", type=_POSITIVE_FLOAT, help="play: resize each frame by this factor (default: 1)")


def build_parser() -> argparse.ArgumentParser:
    version = sys.modules[__package__].__version__  # the package's own (an import of it would go up a layer)
    build_parser.version = version
    p = argparse.ArgumentParser(prog="retrograd", description="Train and inspect retrograd models from TOML "
                                "configs (see examples/*.toml).")
    p.add_argument("--version", action="version", version=f"retrograd {version}",
                   help="print retrograd's version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sp):
        sp.add_argument("config", help="a TOML config, e.g. examples/fashion_mlp.toml")
        sp.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override a config value (repeatable), e.g. --set optim.lr=0.01")
        _quiet_flag(sp)
        return sp

    t = with_config(sub.add_parser("train", help="train from a config; writes a run folder"))
    r = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint")
    _run_dir_arg(r, "continue")
    r.add_argument("--epochs", type=_POSITIVE_INT, help="train to this many epochs in total (default: the config's)")
    _quiet_flag(r)
    for sp in (t, r):
        _rank_flags(sp)
    e = sub.add_parser("evaluate", help="metrics of a run's checkpoint on its validation and test data")
    _run_dir_arg(e, "evaluate")
    _checkpoint_arg(e, "evaluate")
    for sp in (r, e):
        _trust_flag(sp)
    c = with_config(sub.add_parser("compare", help="train with several optimizers from the same init and batch "
                                   "order; one plot, one table"))
    c.add_argument("--optimizers", required=True, help="comma-separated, e.g. sgd,momentum,adam,adamw,lion")
    c.add_argument("--lr", help="learning rates per optimizer, e.g. sgd=0.05,adam=0.001")
    c.add_argument("--timed-steps", type=_number(int, 0, "an int >= 0"), default=20, metavar="N",
                   help="after training, time N rounds of one training step per optimizer on the same batches, "
                        "taking turns, for the step_ms column: their median (default: 20; 0: skip)")
    f = with_config(sub.add_parser("lr-find", help="learning-rate range test: suggestion and plot"))
    f.add_argument("--start-lr", type=_POSITIVE_FLOAT, default=1e-6, help="learning rate of the first step (default: 1e-6)")
    f.add_argument("--end-lr", type=_POSITIVE_FLOAT, default=10.0, help="learning rate of the last step; the range test "
                   "grows it exponentially and stops early when the loss diverges (default: 10)")
    f.add_argument("--num-iter", type=_number(int, 2, "an int >= 2"), default=100, help="number of training steps of the range test "
                   "(default: 100)")
    f.add_argument("--out", help="plot path (default: RUN.dir/NAME-lr_finder.png)")
    pl = sub.add_parser("plot", help="plot a run's metrics")
    pl.add_argument("run_dir", help="a run folder (writes run.png; a retrograd rl run: returns.png) or a folder "
                    "that retrograd compare wrote (redraws comparison.png)")
    g = sub.add_parser("generate", help="sample text from a trained language model")
    _run_dir_arg(g, "sample from (a language model trained on text: it has vocab.json)", "runs/shakespeare_gpt")
    g.add_argument("--prompt", default="\n", help="text the sample starts with; every character must be in "
                   "the run's vocabulary (default: a newline)")
    g.add_argument("--max-new-tokens", type=_POSITIVE_INT, default=200, help="characters to generate (default: 200)")
    g.add_argument("--temperature", type=_number(float, 0, "a finite number >= 0"), default=0.8, help="divides the logits before sampling: lower "
                   "is more conservative, higher more random (default: 0.8)")
    g.add_argument("--top-k", type=_POSITIVE_INT, default=None, help="sample only from the k most likely next "
                   "characters (default: all)")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampling generator (default: 0)")
    _checkpoint_arg(g, "sample from")
    _trust_flag(g)
    pr = sub.add_parser("predict", help="predictions of a trained run on new data, to CSV or .npy")
    _run_dir_arg(pr, "predict with")
    pr.add_argument("input", help="the new data, raw, as the run was trained on (read and preprocessed as its "
                    "inputs.json says): a CSV/TSV/Parquet table, a .npy/.npz array, an image or a folder of "
                    "images, e.g. new_rows.csv")
    pr.add_argument("-o", "--out", help="where to write: .csv (id, predicted class, one probability column per "
                    "class; a regression run's values), .npy (the (N, C) probabilities, and OUT.labels.txt) or "
                    ".npz (default: RUN/predictions_<input name>.csv)")
    pr.add_argument("--checkpoint", default=None, help="best, last, or the name or path of a checkpoint folder "
                    "(default: best when the run has one, else last; the command says which it loaded)")
    pr.add_argument("--batch-size", type=_POSITIVE_INT, help="inputs per forward pass (default: the run's "
                    "data.eval_batch_size, else max(data.batch_size, 500))")
    _trust_flag(pr)
    tu = sub.add_parser("tune", help="hyperparameter search over the config's [search] table (Optuna)")
    tu.add_argument("config", nargs="?", help="a TOML config with a [search] table, e.g. examples/tune_fashion_mlp.toml")
    tu.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
    tu.add_argument("--resume", action="store_true", help="continue the study (interrupted trials are rerun)")
    tu.add_argument("--workers", type=_POSITIVE_INT, help="local worker processes sharing the study")
    tu.add_argument("--storage", help="Optuna storage URL (default: SQLite in the study folder), e.g. "
                    "postgresql://user:pw@host/db, or 'journal'")
    tu.add_argument("--n-trials", type=_POSITIVE_INT, help="total trials (default: [search] n_trials; grid: the whole grid)")
    tu.add_argument("--show", metavar="STUDY_DIR", help="print a study's table and redraw its plots")
    _rl_parser(sub)
    ex = sub.add_parser("export", help="a run's model as an ONNX file (onnxruntime, edge runtimes), optionally int8")
    _run_dir_arg(ex, "export", "runs/fashion_cnn")
    ex.add_argument("--format", choices=("onnx",), default="onnx", help="file format (default: onnx)")
    ex.add_argument("--quantize", choices=("int8",), help="int8 weights by onnxruntime's dynamic quantisation")
    ex.add_argument("--output", "-o", help="the .onnx file to write (default: RUN/model.onnx, RUN/model.int8.onnx)")
    ex.add_argument("--opset", type=_number(int, 17, "an int >= 17"), default=None,
                    help="ONNX opset, 17 to 21 (default: 17)")
    ex.add_argument("--checkpoint", default=None, help="best, last, or the name or path of a checkpoint folder "
                    "(default: best when the run has one, else last)")
    _trust_flag(ex)
    p.command_parsers = sub.choices  # for main: an unknown flag is reported by its command's parser
    return p


COMMANDS = {"train": cmd_train, "resume": cmd_resume, "evaluate": cmd_evaluate, "compare": cmd_compare,
            "lr-find": cmd_lr_find, "plot": cmd_plot, "generate": cmd_generate, "predict": cmd_predict}
COMMANDS["tune"] = cmd_tune
COMMANDS["export"] = cmd_export
COMMANDS["rl"] = cmd_rl


def _where(state: dict) -> str:
    return (f"epoch {state.get('epoch', 0) + 1}, batch {state.get('batch_in_epoch', 0)} "
            f"(optimizer step {state.get('global_step', 0)})")


def interrupt_message(args) -> str:
    """What Ctrl-C left behind, honestly: the checkpoint saved where training stopped, or the older
    one ``resume`` would continue from (and what is lost after it), or that nothing can be resumed."""
    run_dir = getattr(args, "active_run_dir", None)
    if run_dir is None:
        return "interrupted (before training started; nothing was saved)"
    trainer = getattr(args, "active_trainer", None)
    resume = f"continue with: retrograd resume {run_dir}"
    if trainer is not None and trainer.interrupt_checkpoint is not None:
        return f"interrupted at {_where(trainer.state_summary())}; saved a checkpoint there; {resume}"
    now = f" at {_where(trainer.state_summary())}" if trainer is not None else ""
    why = f" (the save failed: {trainer.interrupt_error})" if trainer is not None and trainer.interrupt_error \
        else ""
    try:
        last = checkpoint_dir(run_dir, "last")
        saved = json.loads((last / "trainer.json").read_text())["state"]
    except (ConfigError, OSError, ValueError, KeyError, TypeError):
        again = f"retrograd train {args.config}" if getattr(args, "config", None) else f"retrograd resume {run_dir}"
        return (f"interrupted{now}; no checkpoint was saved{why}, so nothing can be resumed and the training "
                f"so far is lost; start again with: {again}")
    return (f"interrupted{now} without saving{why}; the last checkpoint is at {_where(saved)} and the "
            f"training after it is lost; {resume}")


EXIT_FAILED = 3  # the run ran and failed: NaNGuard stopped it (summary.json: status "failed")
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (a shell's status of a process SIGPIPE ended)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's final flush of what is still buffered for the
    closed pipe does not print "Exception ignored ... BrokenPipeError" (the Python docs' recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # stdout is not a file (a test's capture): nothing will flush to the pipe


def main(argv: Sequence[str] | None = None, *, extra_callbacks: Sequence = ()) -> int:
    """Run the command line ``argv``; returns the exit status: 0 done (early stopping included),
    1 an unexpected error (a traceback), 2 a usage, config, data or checkpoint error, a missing optional
    package, or a path that is not the file or folder it should be (the message names it),
    3 training failed (non-finite loss or gradients: NaNGuard stopped the run; ``summary.json`` has
    ``"status": "failed"`` and the reason), 130 interrupted (Ctrl-C), 141 stdout closed by its reader
    (``retrograd generate ... | head``; quietly, as Unix tools end on SIGPIPE); with several ranks
    (``--nproc``, mpiexec), 4 a rank hung or died and the others were stopped
    (``retrograd.train.ranks.EXIT_RANK_LOST``).
    ``extra_callbacks`` are appended to the Trainer's callbacks by ``train`` and ``resume``."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # `retrograd train c.toml --bogus`: the command's usage, `retrograd train: error: ...`
        parser.command_parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    if getattr(args, "nproc", None) not in (None, 1) and env_world_size() is None:
        return _launch(args, sys.argv[1:] if argv is None else list(argv))
    if args.command == "tune" and (env_world_size() or 1) > 1:
        return _tune_under_mpiexec(args)
    try:
        code = _run(args, extra_callbacks)
    except BaseException as e:  # one rank failing alone must not leave the others waiting
        ranks = getattr(args, "ranks", None)
        if ranks is None or ranks.size == 1 or isinstance(e, SystemExit):
            raise
        import traceback
        traceback.print_exc()
        ranks.abort(f"rank {ranks.rank}: {type(e).__name__}: {e} (traceback above)", 1)
        raise
    ranks = getattr(args, "ranks", None)
    if ranks is not None and ranks.size > 1:
        note_rank(ranks.rank, "exit", code)
    if ranks is not None and ranks.size > 1 and code not in (0, 130) and not getattr(args, "agreed", False):
        sys.stderr.flush()
        note_rank(ranks.rank, "exit", code)
        ranks.comm.Abort(code)  # an error of this rank alone: stop the others now
    return code


def _tune_under_mpiexec(args) -> int:
    """``mpiexec -n N retrograd tune ...``: refused, with what to run instead (rank 0 says it; all exit 2).
    A trial trains in one process, and N copies of one study started at once would race to create it."""
    from .distributed import launched_rank

    if (launched_rank() or 0) == 0:
        _error(args, f"started by mpiexec as {env_world_size()} ranks; tune does not run under mpiexec (its "
                     "trials train in one process each). Run trials in parallel with --workers N on one machine; "
                     "on several machines, start `retrograd tune CONFIG --storage postgresql://USER:PW@HOST/DB` "
                     "on one and the same command with --resume on each of the others (README: "
                     "\"Training on several processes and machines\")")
    return 2


def _error(args, text: str) -> None:
    """``retrograd CMD: error: TEXT`` on stderr; ``rank R:`` before TEXT on a rank of several."""
    ranks = getattr(args, "ranks", None)
    who = f"rank {ranks.rank}: " if ranks is not None and ranks.size > 1 else ""
    print(f"retrograd {args.command}: error: {who}{text}", file=sys.stderr, flush=True)


def _launch(args, argv: list[str]) -> int:
    """``--nproc N`` outside mpiexec: the config (or run folder) checked once here, then N ranks."""
    from .train.launch import launch

    try:
        if args.command == "train":
            _config_from_args(args)
        else:
            read_run_config(pathlib.Path(args.run_dir), trust_model_code=args.trust_model_code, command="resume")
        return launch(args.nproc, _without_nproc(argv), args.command)
    except (ConfigError, CheckpointError) as e:
        _error(args, str(e))
        return 2


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less ``--nproc N`` / ``--nproc=N`` (and argparse's abbreviations of it)."""
    out, skip = [], False
    for tok in argv:
        if skip:
            skip = False
        elif tok.startswith("--np") and "--nproc".startswith(tok):
            skip = True
        elif tok.startswith("--np") and "=" in tok and "--nproc".startswith(tok.split("=", 1)[0]):
            pass
        else:
            out.append(tok)
    return out


def _run(args, extra_callbacks: Sequence) -> int:
    """``main``'s command, its errors turned into messages and exit statuses."""
    try:
        if args.command in ("train", "resume"):
            result = COMMANDS[args.command](args, extra_callbacks=extra_callbacks)
        else:
            result = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
    except RankMismatchError as e:  # every rank found it: rank 0 says it, all exit 2
        args.agreed = True
        if args.ranks.rank == 0:
            print(f"retrograd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ConfigError, DataNotInstalledError, CheckpointError) as e:
        _error(args, str(e))
        return 2
    except ImportError as e:  # an optional package missing (its message names the install); not retrograd's own
        if (e.name or "").split(".")[0] == "retrograd":
            raise
        _error(args, str(e))
        return 2
    except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        _error(args, f"{e.filename}: {e.strerror}")
        return 2
    except KeyboardInterrupt:
        ranks = getattr(args, "ranks", None)
        if ranks is None or ranks.rank == 0:  # the ranks stop at the same batch; rank 0 saved and says so
            print(f"retrograd {args.command}: {getattr(args, 'interrupt_text', None) or interrupt_message(args)}",
                  file=sys.stderr)
        args.agreed = True
        return 130
    except BrokenPipeError:  # `retrograd generate ... | head`: the reader has gone; stop quietly
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    if isinstance(result, dict) and result.get("status") == "rank" and result.get("failed"):
        args.agreed = True  # every rank's NaNGuard stopped at the same batch; rank 0 says why
        return EXIT_FAILED
    if isinstance(result, dict) and result.get("status") == "failed":
        if getattr(args, "ranks", None) is not None:
            args.agreed = True
        report = pathlib.Path(result["run_dir"]) / "nan_report.txt"
        print(f"retrograd {args.command}: error: training failed: {result['reason']}"
              + (f"; see {report}" if report.is_file() else ""), file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())

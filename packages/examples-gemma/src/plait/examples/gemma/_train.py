"""The training loop: data, sharded state, steps, validation, checkpoints, metrics, plot.

A work directory holds everything a run produces::

    workdir/
      config.json        the TrainConfig (what `sample` rebuilds the model from)
      tokenizer.model    the SentencePiece model (bpe runs)
      checkpoints/<step> plait.checkpoint CheckpointManager steps: {'model', 'optimizer'}
      metrics.json       history (train loss, validation loss/perplexity, throughput) + summary
      loss.png           training and validation loss against the unigram baseline
      samples.txt        text sampled at the end
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from plait import checkpoint as ckpt

from . import _data, _pipeline, _tokenizer
from ._config import TrainConfig
from ._sharding import make_mesh
from ._steps import TrainFunctions, build_train_functions, learning_rate_schedule, place_batch

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.model"
METRICS_FILE = "metrics.json"
PLOT_FILE = "loss.png"
SAMPLES_FILE = "samples.txt"
CHECKPOINT_DIR = "checkpoints"
SAMPLE_PROMPT = "ROMEO:\n"


@dataclasses.dataclass
class Dataset:
    tokenizer: Any
    train_windows: np.ndarray
    validation_windows: np.ndarray
    unigram_loss: float


def config_to_json(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_json(data: dict[str, Any]) -> TrainConfig:
    from ._config import ModelConfig

    model = dict(data["model"])
    model["attention_pattern"] = tuple(model["attention_pattern"])
    return TrainConfig(**{**data, "model": ModelConfig(**model)})


def load_tokenizer(config: TrainConfig, documents: list[str], workdir: Path | None = None):
    """The run's tokenizer: the byte tokenizer, or the cached SentencePiece BPE model."""
    if config.tokenizer == "byte":
        return _tokenizer.ByteTokenizer()
    cache = _data.data_dir() / "tokenizers"
    tokenizer = _tokenizer.load_or_train_tokenizer(
        documents, config.model.vocab_size, cache, _data.corpus_fingerprint(documents)
    )
    if workdir is not None and jax.process_index() == 0:
        target = workdir / TOKENIZER_FILE
        shutil.copyfile(tokenizer.model_file, target.with_suffix(".tmp"))
        os.replace(target.with_suffix(".tmp"), target)
    return tokenizer


def tokenizer_for_workdir(workdir: Path, config: TrainConfig):
    """The tokenizer a finished run used (for sampling)."""
    if config.tokenizer == "byte":
        return _tokenizer.ByteTokenizer()
    return _tokenizer.SentencePieceTokenizer(workdir / TOKENIZER_FILE)


def prepare_dataset(config: TrainConfig, documents: list[str] | None = None, workdir: Path | None = None) -> Dataset:
    """Tokenized, split and packed text (the Shakespeare corpus unless ``documents``)."""
    documents = documents if documents is not None else _data.load_corpus()
    tokenizer = load_tokenizer(config, documents, workdir)
    if tokenizer.vocab_size > config.model.vocab_size:
        raise ValueError(
            f"The tokenizer has {tokenizer.vocab_size} ids but model.vocab_size is {config.model.vocab_size}."
        )
    stream = _pipeline.encode_documents(documents, tokenizer)
    splits = _pipeline.split_stream(stream, config.validation_fraction)
    return Dataset(
        tokenizer=tokenizer,
        train_windows=_pipeline.pack(splits.train, config.seq_len),
        validation_windows=_pipeline.pack(splits.validation, config.seq_len),
        unigram_loss=_pipeline.unigram_entropy(splits.train, config.model.vocab_size),
    )


def evaluate(functions: TrainFunctions, state, windows: np.ndarray, config: TrainConfig) -> dict[str, float]:
    """Mean validation loss and perplexity over the first ``eval_batches`` batches."""
    total, count = 0.0, 0.0
    n_batches = max(1, min(config.eval_batches, len(windows) // config.batch_size))
    for i in range(n_batches):
        rows = windows[i * config.batch_size : (i + 1) * config.batch_size]
        if len(rows) < config.batch_size:
            break
        batch = place_batch(_pipeline.language_model_batch(rows), functions.batch_sharding)
        out = functions.eval_step(state, batch)
        total += float(out["nll_sum"])
        count += float(out["tokens"])
    loss = total / max(count, 1.0)
    return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50.0))}


def _read_history(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [row for row in json.loads(path.read_text())["history"] if row["step"] <= up_to_step]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def plot_losses(history: list[dict[str, Any]], unigram_loss: float, path: Path) -> None:
    """Training and validation loss curves, with the unigram baseline, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    train = [(r["step"], r["train_loss"]) for r in history if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", lw=1.2)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", lw=1.5)
    ax.axhline(unigram_loss, color="gray", ls="--", lw=1, label=f"unigram baseline ({unigram_loss:.2f})")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns."""

    state: dict[str, Any]
    functions: TrainFunctions
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    tokenizer: Any


def train(
    config: TrainConfig,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    until_step: int | None = None,
    documents: list[str] | None = None,
    devices: list[jax.Device] | None = None,
    progress: bool = True,
    log=print,
) -> TrainResult:
    """Trains ``config`` in ``workdir``; with ``resume`` continues from the latest checkpoint.

    Args:
      config: the run's configuration.
      workdir: where config, checkpoints, metrics, plot and samples go.
      resume: restore the latest checkpoint of ``workdir`` (its config must match).
      until_step: stop after this step (the schedule still spans ``num_steps``), e.g.
        to split a run in two.
      documents: train on these texts instead of the Shakespeare corpus.
      devices: the devices of the mesh (default: all).
      progress: show a tqdm progress bar.
      log: where one-line messages go.
    """
    from tqdm.auto import tqdm

    workdir = Path(workdir)
    primary = jax.process_index() == 0
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / CONFIG_FILE
    if resume and config_path.exists():
        saved = config_from_json(json.loads(config_path.read_text()))
        if dataclasses.replace(saved, max_train_minutes=config.max_train_minutes) != config:
            raise ValueError(
                f"--resume: the configuration differs from the one saved in {config_path}.\n"
                "Fix: resume with the same --config and overrides, or use a new --workdir."
            )
    if primary:
        _write_json(config_path, config_to_json(config))

    started = time.perf_counter()
    data = prepare_dataset(config, documents, workdir)
    log(
        f"data: {len(data.train_windows)} train / {len(data.validation_windows)} validation windows of "
        f"{config.seq_len} tokens, vocab {data.tokenizer.vocab_size}, unigram baseline {data.unigram_loss:.3f} nats"
    )
    mesh = make_mesh(config.mesh_data, config.mesh_fsdp, config.mesh_tensor, devices)
    functions = build_train_functions(config, mesh)
    manager = ckpt.CheckpointManager(workdir / CHECKPOINT_DIR, max_to_keep=config.keep_checkpoints)
    start_step = 0
    latest = manager.latest_step() if resume else None
    if latest is not None:
        from ._sharding import with_shardings

        target = with_shardings(functions.abstract_state, functions.shardings)
        state = manager.restore(latest, target)
        start_step = latest
        log(f"resumed from step {latest} ({manager.step_directory(latest)})")
    else:
        if not resume and manager.latest_step() is not None:
            raise ValueError(
                f"{workdir / CHECKPOINT_DIR} already holds checkpoints (latest step {manager.latest_step()}).\n"
                "Fix: pass --resume to continue that run, or choose a new --workdir."
            )
        state = functions.init()
    history = _read_history(workdir / METRICS_FILE, start_step)
    end_step = min(config.num_steps, until_step if until_step is not None else config.num_steps)
    schedule = learning_rate_schedule(config)
    tokens_per_step = config.batch_size * config.seq_len
    summary: dict[str, Any] = {}

    def save(step: int, metrics: dict[str, float]) -> None:
        manager.save(step, state, metrics=metrics, metadata={"config": config_to_json(config)})

    timed_steps, timed_seconds = 0, 0.0
    bar = tqdm(total=end_step, initial=start_step, disable=not (progress and primary), dynamic_ncols=True, file=sys.stderr)
    window_loss, window_n = 0.0, 0
    last_eval: dict[str, float] = {}
    step = start_step
    stop_reason = "finished"
    try:
        while step < end_step:
            batch = place_batch(_pipeline.batch_at(data.train_windows, config.batch_size, step, seed=config.seed), functions.batch_sharding)
            tick = time.perf_counter()
            state, metrics = functions.train_step(state, batch)
            loss = float(metrics["loss"])  # waits for the step; also catches NaN early
            elapsed_step = time.perf_counter() - tick
            step += 1
            if step > start_step + 1:  # the first step of a process includes compilation
                timed_steps += 1
                timed_seconds += elapsed_step
            window_loss += loss
            window_n += 1
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {step}; lower learning_rate or enable clipping.")
            bar.update(1)
            row: dict[str, Any] = {}
            if step % config.log_every == 0 or step == end_step:
                row = {"step": step, "train_loss": window_loss / window_n, "learning_rate": float(schedule(step - 1))}
                if timed_steps:
                    row["tokens_per_second"] = tokens_per_step * timed_steps / timed_seconds
                window_loss, window_n = 0.0, 0
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", **({"val": f"{last_eval['val_loss']:.3f}"} if last_eval else {}))
            out_of_time = config.max_train_minutes > 0 and (time.perf_counter() - started) > 60 * config.max_train_minutes
            if step % config.eval_every == 0 or step == end_step or out_of_time:
                last_eval = evaluate(functions, state, data.validation_windows, config)
                row = {**row, "step": step, **last_eval}
                log(f"step {step}: validation loss {last_eval['val_loss']:.4f}, perplexity {last_eval['val_perplexity']:.1f}")
            if row:
                history.append(row)
            if step % config.checkpoint_every == 0 or step == end_step or out_of_time:
                save(step, {k: v for k, v in row.items() if k in ("val_loss", "train_loss")})
            if out_of_time and step < end_step:
                stop_reason = f"max_train_minutes={config.max_train_minutes} reached"
                break
        if not last_eval:  # nothing left to train (a finished run resumed): still report
            last_eval = evaluate(functions, state, data.validation_windows, config)
    finally:
        bar.close()
        manager.close()

    wall = time.perf_counter() - started
    summary = {
        "config": config_to_json(config),
        "devices": len(mesh.devices.flat),
        "mesh": dict(mesh.shape),
        "steps": step,
        "stop_reason": stop_reason,
        "unigram_loss": data.unigram_loss,
        "final_val_loss": last_eval.get("val_loss"),
        "final_val_perplexity": last_eval.get("val_perplexity"),
        "tokens_per_second": tokens_per_step * timed_steps / timed_seconds if timed_steps else None,
        "wall_seconds_this_run": wall,
        "parameters": config.model.num_params(),
    }
    if primary:
        _write_json(workdir / METRICS_FILE, {"summary": summary, "history": history})
        plot_losses(history, data.unigram_loss, workdir / PLOT_FILE)
    log(
        f"done: step {step} ({stop_reason}), validation loss {summary['final_val_loss']}, unigram "
        f"{data.unigram_loss:.3f}, {summary['tokens_per_second'] or 0:.0f} tokens/s, {wall:.0f} s"
    )
    if config.sample_tokens > 0:
        from ._sample import Sampler

        # Every process runs the (collective) computation on the global parameters.
        sampler = Sampler(functions.model(state), data.tokenizer)
        text = sampler.generate_text(
            [SAMPLE_PROMPT], max_new_tokens=config.sample_tokens, temperature=0.8, top_k=40, seed=config.seed
        )[0]
        if primary:
            (workdir / SAMPLES_FILE).write_text(SAMPLE_PROMPT + text + "\n")
            log("sample:\n" + SAMPLE_PROMPT + text)
    return TrainResult(state=state, functions=functions, history=history, summary=summary, tokenizer=data.tokenizer)

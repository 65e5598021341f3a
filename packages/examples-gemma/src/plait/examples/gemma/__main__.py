"""``plait-gemma``: train, sample from, or size a Gemma-family model.

    plait-gemma train [--config tiny] [--config.model.num_layers=2 ...] [--workdir DIR] [--resume]
                      [--num-processes N --process-id I --coordinator HOST:PORT]
    plait-gemma sample --checkpoint DIR --prompt TEXT [--prompt TEXT ...] [--max-new-tokens 200]
                       [--temperature 0.8] [--top-k 40] [--top-p 0.95] [--seed 0] [--padding left]
    plait-gemma info [--config gemma3_4b]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._config import CONFIGS, apply_overrides, describe, get_config
from ._errors import ConfigError


def _split_overrides(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Separates ``--config.a.b=value`` / ``--config.a.b value`` from the other arguments."""
    rest, overrides = [], {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            name, eq, value = arg[len("--config.") :].partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    raise ConfigError(f"{arg} needs a value: {arg}=VALUE.")
                value = argv[i + 1]
                i += 1
            overrides[name] = value
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plait-gemma", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train on the Shakespeare corpus")
    train.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    train.add_argument("--workdir", default=None, help="default: runs/gemma-<config>")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--num-processes", type=int, default=None)
    train.add_argument("--process-id", type=int, default=None)
    train.add_argument("--coordinator", default=None, help="HOST:PORT of process 0")

    sample = commands.add_parser("sample", help="sample text from a trained checkpoint")
    sample.add_argument("--checkpoint", required=True, help="a train --workdir, or one of its checkpoint steps")
    sample.add_argument("--prompt", action="append", required=True, help="repeat for a batch of prompts")
    sample.add_argument("--max-new-tokens", type=int, default=200)
    sample.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    sample.add_argument("--top-k", type=int, default=None)
    sample.add_argument("--top-p", type=float, default=None)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--padding", choices=("left", "right"), default="left")

    info = commands.add_parser("info", help="shape and parameter count (nnx.eval_shape; allocates nothing)")
    info.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    return parser


def _init_distributed(args) -> None:
    if args.num_processes is None or args.num_processes <= 1:
        return
    if args.process_id is None or args.coordinator is None:
        raise ConfigError("--num-processes > 1 needs --process-id and --coordinator HOST:PORT.")
    import jax

    # Only used by the CPU backend (cross-process collectives over TCP); harmless elsewhere.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)


def _run_train(args, overrides: dict[str, str]) -> None:
    _init_distributed(args)
    from ._train import train

    config = apply_overrides(get_config(args.config), overrides)
    workdir = Path(args.workdir or f"runs/gemma-{args.config}")
    print(f"config {args.config}: {describe(config.model)}")
    train(config, workdir, resume=args.resume, progress=not args.no_progress)


def _find_checkpoint(path: Path) -> tuple[Path, Path]:
    """(workdir, step directory) for a workdir, its checkpoints folder, or one step."""
    from plait import checkpoint as ckpt

    from ._train import CHECKPOINT_DIR, CONFIG_FILE

    for workdir in (path, path.parent, path.parent.parent):
        if (workdir / CONFIG_FILE).exists():
            break
    else:
        raise FileNotFoundError(f"No {CONFIG_FILE} in {path} or its parents: is it a `plait-gemma train` workdir?")
    if path.name.isdigit():
        return workdir, path
    with ckpt.CheckpointManager(workdir / CHECKPOINT_DIR) as manager:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"{workdir / CHECKPOINT_DIR} holds no complete checkpoint yet.")
        return workdir, Path(manager.step_directory(step))


def load_trained_model(path: str | Path):
    """``(model, tokenizer, config)`` from a train workdir (latest step) or a step directory."""
    from plait import checkpoint as ckpt
    from plait import nnx

    from ._model import Gemma
    from ._train import CONFIG_FILE, config_from_json, tokenizer_for_workdir

    workdir, step_dir = _find_checkpoint(Path(path))
    config = config_from_json(json.loads((workdir / CONFIG_FILE).read_text()))
    abstract = nnx.eval_shape(lambda: Gemma(config.model, rngs=nnx.Rngs(0)))
    graphdef, target = nnx.split(abstract)
    restored = ckpt.restore(step_dir, {"model": target}, partial=True)
    model = nnx.merge(graphdef, restored.tree["model"])
    return model, tokenizer_for_workdir(workdir, config), config


def _run_sample(args) -> None:
    from ._sample import Sampler

    model, tokenizer, _ = load_trained_model(args.checkpoint)
    sampler = Sampler(model, tokenizer)
    texts = sampler.generate_text(
        [p.encode().decode("unicode_escape") for p in args.prompt],
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        padding=args.padding,
    )
    for prompt, text in zip(args.prompt, texts, strict=True):
        print(f"=== {prompt!r}\n{prompt.encode().decode('unicode_escape')}{text}\n")


def _run_info(args) -> None:
    from plait import nnx

    from ._model import Gemma, count_params

    config = get_config(args.config).model
    abstract = nnx.eval_shape(lambda: Gemma(config, rngs=nnx.Rngs(0)))
    print(f"{args.config}: {describe(config)}")
    print(f"parameters (from nnx.eval_shape): {count_params(abstract):,}")
    print(f"layer kinds: {''.join('L' if k == 'local' else 'G' for k in config.layer_types)}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        rest, overrides = _split_overrides(argv)
        args = _parser().parse_args(rest)
        if overrides and args.command != "train":
            raise ConfigError(f"--config.* overrides apply to `train` only, got {sorted(overrides)}.")
        if args.command == "train":
            _run_train(args, overrides)
        elif args.command == "sample":
            _run_sample(args)
        else:
            _run_info(args)
    except (ConfigError, FileNotFoundError) as err:
        print(f"plait-gemma: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

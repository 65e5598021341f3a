"""``plait-vision``: train an image classifier.

    plait-vision                                   # the default CNN on MNIST
    plait-vision --config fashion_mnist
    plait-vision --config resnet18 --config.num_epochs=1
    plait-vision --config digits --workdir /tmp/run --resume
"""

from __future__ import annotations

import argparse
import ast
import sys

from .configs import CONFIGS, get_config


def apply_overrides(config, overrides: list[str]):
    """Apply ``--config.a.b=value`` overrides, parsing values as Python literals."""
    for item in overrides:
        if not item.startswith("--config.") or "=" not in item:
            raise SystemExit(f"unrecognised argument {item!r}; overrides look like --config.key=value")
        dotted, raw = item[len("--config."):].split("=", 1)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # bare words are strings: --config.optimizer=sgd
        node = config
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise SystemExit(f"config has no field {dotted!r}; fields: {sorted(config.keys())}")
        current = node[leaf]
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        try:
            node[leaf] = value
        except TypeError as exc:
            raise SystemExit(f"--config.{dotted}={raw}: {exc}") from None
    return config


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="plait-vision", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default", choices=sorted(CONFIGS))
    parser.add_argument("--dataset", default=None, choices=["mnist", "fashion_mnist", "digits"],
                        help="shorthand for --config.dataset")
    parser.add_argument("--workdir", default=None, help="where metrics, plot and checkpoints go")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)
    parser.add_argument("--coordinator", default=None, help="host:port of process 0")
    args, rest = parser.parse_known_args(argv)
    config = apply_overrides(get_config(args.config), rest)
    if args.dataset:
        config.dataset = args.dataset
    return args, config


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    from plait.core.distributed import initialize_distributed

    # Unset flags fall back to JAX_NUM_PROCESSES / JAX_PROCESS_ID / JAX_COORDINATOR_ADDRESS;
    # one process (the default) needs none of them.
    initialize_distributed(args.num_processes, args.process_id, args.coordinator)
    from ._train import train_and_evaluate

    result = train_and_evaluate(config, args.workdir or config.workdir, resume=args.resume)
    final = result["final"]
    if final:
        print(f"final test accuracy {final['test_accuracy']:.4f} "
              f"(metrics: {args.workdir or config.workdir}/metrics.json, plot: metrics.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""W&B sweeps drive tools/run.py: a sweep parameter named `section.key` is a `--set section.key=value`.

A sweep agent starts its command with `${args}` expanded to `--section.key=value` per parameter
(experiments/sweeps/heads.yaml); `overrides_from_args` turns those into overrides, and
`agent_run_name` gives each run of a sweep its own run directory.
"""
from arcface_keras.config import ConfigError


def overrides_from_args(args):
    """['--model.head.s=64', ...] -> ['model.head.s=64', ...]; anything else is a one-line ConfigError."""
    overrides = []
    for arg in args:
        key = arg[2:].split("=", 1)[0]
        if not arg.startswith("--") or "=" not in arg or "." not in key:
            raise ConfigError(f"unrecognised argument {arg!r}: expected --set section.key=value "
                              "(or --section.key=value, as a W&B sweep agent passes it)")
        overrides.append(arg[2:])
    return overrides


def agent_run_name(name, environ):
    """`name-<run id>` inside a sweep (the agent sets WANDB_SWEEP_ID and WANDB_RUN_ID), else `name`."""
    run_id = environ.get("WANDB_RUN_ID") if environ.get("WANDB_SWEEP_ID") else None
    return f"{name}-{run_id}" if run_id else name

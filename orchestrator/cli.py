"""The `mtrl` command: `trial`, `run`, `status`, `analyze`.

Every user error (bad flag value, unknown name, impossible setting, foreign results folder)
ends as one line on stderr and exit code 2, before any work starts.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from pydantic import ValidationError

USER_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    from orchestrator import local_trial

    parser = argparse.ArgumentParser(prog="mtrl", description="Sparsity and plasticity in multi-task RL: "
                                     "run trials and sweeps, check their status, analyse results.")
    sub = parser.add_subparsers(dest="command", required=True)
    local_trial.register(sub)
    for module in _plugins():
        module.register(sub)
    return parser


def _plugins():
    import importlib

    found = []
    for name in ("orchestrator.sweep_cli", "analysis.cli"):
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return found


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        from orchestrator.local_trial import config_error_message

        print(f"mtrl {args.command}: error: {config_error_message(exc)}", file=sys.stderr)
    except USER_ERRORS as exc:
        print(f"mtrl {args.command}: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"mtrl {args.command}: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())

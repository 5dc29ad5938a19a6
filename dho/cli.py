"""dho command line: one subcommand group per package module.

Each module in :data:`COMMANDS` defines ``add_cli(subparsers)`` that adds its
subcommands and sets ``func`` (called with the parsed args, returns an exit code).
User errors (:class:`~dho.errors.DhoError`) print as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import DhoError

# command -> the module whose ``add_cli`` defines it.  Only the module of the command
# being run is imported, so ``dho split`` does not pay for torch, mlflow and pandas.
COMMANDS = {
    "train": "dho.train",
    "methods": "dho.methods",
    "data": "dho.data.cli", "split": "dho.data.cli",
    "students": "dho.models.cli", "teacher": "dho.models.cli",
    "demo": "dho.demo.cli",
    "submit": "dho.launch", "submit-cmd": "dho.launch",
    "mlflow-server": "dho.mlflow_server", "mlflow-init": "dho.tracking", "mlflow-sync": "dho.tracking",
    "mlflow-check": "dho.tracking", "mlflow-relocate": "dho.tracking",
    "collect": "dho.results.cli", "tables": "dho.results.cli", "figures": "dho.results.cli",
    "rechoose": "dho.results.cli", "readme-results": "dho.results.cli", "collect-evals": "dho.results.cli",
    "ood-tables": "dho.results.cli", "paper-table": "dho.results.cli", "collect-linear-eval": "dho.results.cli",
    "evaluate": "dho.evaluate", "evaluate-teacher": "dho.evaluate",
    "plan": "dho.plan",
    "linear-eval": "dho.linear_eval",
    "worker": "dho.worker",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))

# Every command's --help ends with examples (tests/test_cli.py checks that each has one).
# Keys are the command words; each example is a full command line a user can adapt.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "train": ("python -m dho train --spec spec.yaml --out runs/dtd-4shot-dho",
              "python -m dho train --spec base.yaml dho.yaml --set epochs=20 --set method_args.lam=0.3 --out runs/x"),
    "methods": ("python -m dho methods",),
    "data": ("python -m dho data check --root data",),
    "data check": ("python -m dho data check --root data",
                   "python -m dho data check --root data --dataset dtd --dataset eurosat",
                   "python -m dho data check --suite fewshot --json"),
    "split": ("python -m dho split --dataset dtd --root data --kind fewshot --shots 4 --seed 1 --out dtd-4shot.json",
              "python -m dho split --dataset imagenet --root data --kind percent --percent 1 --seed 13 --out in-1pct.json"),
    "students": ("python -m dho students",),
    "teacher": ("python -m dho teacher zeroshot --dataset dtd --root data --model RN50-quickgelu "
                "--pretrained openai --out teachers/dtd-zs.pt",),
    "teacher zeroshot": ("python -m dho teacher zeroshot --dataset dtd --root data --model RN50-quickgelu "
                         "--pretrained openai --out teachers/dtd-zs.pt",),
    "teacher tip-adapter-f": ("python -m dho teacher tip-adapter-f --dataset dtd --root data --base teachers/dtd-zs.pt "
                              "--split-manifest dtd-4shot.json --out teachers/dtd-fs-4shot.pt",),
    "teacher cache": ("python -m dho teacher cache --teacher teachers/dtd-zs.pt --spec spec.json "
                      "--out cache/dtd-zs.npz",),
    "linear-eval": ("python -m dho linear-eval --run-dir results/demo/runs/shapes/4shot/resnet18/zs/dho/seed1 "
                    "--root results/demo/data --out linear.json",),
    "teacher eval": ("python -m dho teacher eval --dataset dtd --root data --teacher teachers/dtd-zs.pt --split test",),
    "demo": ("python -m dho demo data --root results/demo/data",),
    "demo data": ("python -m dho demo data --root results/demo/data --per-class 120 20 30",),
    "demo teacher": ("python -m dho demo teacher --out results/demo/teachers/tiny-clip.pt --steps 220",),
    "demo student": ("python -m dho demo student --out results/demo/students/resnet18.pt --steps 2500",),
    "worker": ("python -m dho worker start --socket /tmp/dho.sock --idle 600 --log results/worker.log",
               "python -m dho worker stop --socket /tmp/dho.sock"),
    "submit": ("python -m dho submit --spec spec.json --out runs/x --launcher local",
               "python -m dho submit --spec spec.json --out runs/x --launcher slurm --partition gpu --gpus 1 "
               "--cpus 8 --mem-gb 32 --time-min 720"),
    "submit-cmd": ("python -m dho submit-cmd --launcher slurm --log-dir logs --done teachers/dtd-zs.pt -- "
                   "teacher zeroshot --dataset dtd --root data --model RN50-quickgelu --pretrained openai "
                   "--out teachers/dtd-zs.pt",),
    "mlflow-server": ("python -m dho mlflow-server --backend-store-uri sqlite:///results/mlflow.db",),
    "mlflow-init": ("python -m dho mlflow-init --uri sqlite:///results/mlflow.db --experiment demo",),
    "mlflow-sync": ("python -m dho mlflow-sync --uri sqlite:///results/mlflow.db results/demo/runs/shapes/4shot/"
                    "resnet18/zs/dho/seed1",),
    "mlflow-check": ("python -m dho mlflow-check results/demo",),
    "mlflow-relocate": ("python -m dho mlflow-relocate --results /elsewhere/results",),
    "collect": ("python -m dho collect --suite demo --runs-root results/demo/runs --out results/demo/runs.csv",),
    "tables": ("python -m dho tables --runs results/demo/runs.csv --out-dir results/demo/tables",),
    "figures": ("python -m dho figures --runs results/demo/runs.csv --out-dir results/demo/figures",),
    "rechoose": ("python -m dho rechoose --runs results/demo/runs.csv --out results/demo/rechoose.csv",),
    "readme-results": ("python -m dho readme-results --suite demo",
                       "python -m dho readme-results --suite ci --readme docs/ci.md --no-figures"),
    "collect-evals": ("python -m dho collect-evals --suite ood --evals-root results/ood/evals --out results/ood/evals.csv",),
    "collect-linear-eval": ("python -m dho collect-linear-eval --suite table1_fewshot --record "
                            "results/table1_fewshot/linear_eval/<run>.json --out results/table1_fewshot/linear_eval.csv",),
    "ood-tables": ("python -m dho ood-tables --evals results/ood/evals.csv --out-dir results/ood/tables",),
    "paper-table": ("python -m dho paper-table --layout table1 --runs results/table1_fewshot/runs.csv "
                    "--runs results/table1_kd0/runs.csv --out-dir results/paper",
                    "python -m dho paper-table --layout table17 --evals results/table17_dfn/evals.csv "
                    "--out-dir results/paper",
                    "python -m dho paper-table --layout table5 --linear-eval results/table1_fewshot/linear_eval.csv "
                    "--out-dir results/paper"),
    "evaluate": ("python -m dho evaluate --run-dir results/imagenet_semi/runs/<run> --dataset imagenet_v2 "
                 "--root data --out v2.json",),
    "plan": ("python -m dho plan --suite fewshot",
             "python -m dho plan --config 'suite=[fewshot,imagenet_semi,ablations]' --tflops 150",
             "python -m dho plan --suite imagenet_semi --step-json results/benchmarks/step_cuda.json"),
    "evaluate-teacher": ("python -m dho evaluate-teacher --teacher results/table17_dfn/teachers/imagenet_a/"
                         "clip_vit_b16.pt --name clip_vit_b16 --dataset imagenet_a --root data --out a.json",),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or only the commands of ``command``'s module."""
    parser = argparse.ArgumentParser(
        prog="dho", description="DHO harness: data checks, training runs, launching, results.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m dho data check --root data\n  python -m dho train --help\n"
               "  python -m dho methods")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    modules = [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES
    for modname in modules:
        importlib.import_module(modname).add_cli(sub)
    for words, sub_parser in subcommands(parser):
        _user_help(words, sub_parser)
    return parser


def subcommands(parser: argparse.ArgumentParser, words: str = ""):
    """``(command words, parser)`` of every subcommand below ``parser``, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                child_words = f"{words} {name}".strip()
                if child.description is None and helps.get(name):
                    child.description = helps[name][0].upper() + helps[name][1:] + "."
                yield child_words, child
                yield from subcommands(child, child_words)


def _user_help(words: str, parser: argparse.ArgumentParser) -> None:
    """Append the command's examples (:data:`EXAMPLES`) to its --help."""
    examples = EXAMPLES.get(words)
    if not examples:
        return
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    block = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    if parser.epilog and "examples:" in parser.epilog:
        return
    parser.epilog = f"{parser.epilog.rstrip()}\n\n{block}" if parser.epilog else block


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Snakemake exports OMP_NUM_THREADS=<the rule's threads>, 0 for a rule that only waits
    # (the SLURM launcher); libgomp rejects 0 with a warning when torch loads. Set it
    # before any command imports torch.
    if os.environ.get("OMP_NUM_THREADS") == "0":
        os.environ["OMP_NUM_THREADS"] = "1"
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DhoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def fast_exit(rc: int) -> None:
    """Exit with ``rc`` after the atexit handlers and a flush of stdout/stderr, skipping
    the interpreter's module teardown: with torch, torchvision, open_clip and mlflow
    loaded that teardown alone takes 2-3 s, on every job.  Every result file is already
    written atomically and closed, and MLflow calls are synchronous (committed) by then.
    A live non-daemon thread (whose end the normal exit would wait for) gets the normal exit."""
    import atexit
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(rc)
    atexit._run_exitfuncs()  # logging.shutdown, multiprocessing's finalizers, ...
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(rc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

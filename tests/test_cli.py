"""The command table of ``dho.cli`` matches what each module's ``add_cli`` defines."""

import argparse

import pytest

from dho import cli


def _commands_of(modname: str) -> set[str]:
    import importlib

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(modname).add_cli(sub)
    return set(sub.choices)


@pytest.mark.parametrize("modname", cli.COMMAND_MODULES)
def test_command_table_matches_add_cli(modname):
    declared = {c for c, m in cli.COMMANDS.items() if m == modname}
    assert _commands_of(modname) == declared


def test_unknown_command_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "train" in err and "mlflow-check" in err


def test_user_error_is_one_line(tmp_path, capsys):
    assert cli.main(["split", "--dataset", "no_such_dataset", "--root", str(tmp_path), "--kind", "fewshot",
                     "--shots", "1", "--seed", "1", "--out", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no_such_dataset" in err[0]


def test_omp_num_threads_zero_from_snakemake_gives_no_libgomp_warning():
    # Snakemake exports OMP_NUM_THREADS=0 to a `threads: 0` rule (the SLURM launcher)
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "0"}
    r = subprocess.run([sys.executable, "-m", "dho", "methods"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "dho" in r.stdout
    assert "OMP_NUM_THREADS" not in r.stderr, r.stderr

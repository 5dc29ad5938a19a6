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


def _all_subcommands():
    return list(cli.subcommands(cli.build_parser()))


def test_every_help_is_user_text_with_an_example():
    for words, parser in _all_subcommands():
        text = parser.format_help()
        assert "examples:\n  python -m dho " in text, f"dho {words} --help has no example: add it to dho.cli.EXAMPLES"
        assert "``" not in text and ":class:" not in text, f"dho {words} --help shows docstring markup"
        assert parser.description, f"dho {words} --help says nothing about what it does"


def test_examples_name_real_commands_and_flags():
    """Each example parses (up to its placeholders), so examples cannot drift from the flags."""
    parser = cli.build_parser()
    for words, examples in cli.EXAMPLES.items():
        for example in examples:
            argv = example.split()[3:]  # after "python -m dho"
            if words == "submit-cmd":
                argv = argv[:argv.index("--")]
                argv = ["submit-cmd", *argv[1:]]
            args = parser.parse_args(argv)
            assert callable(args.func), example


def test_set_errors_name_the_flag_and_file_errors_the_file(tmp_path):
    from dho.errors import ConfigError
    from dho.spec import load_spec

    spec = tmp_path / "s.yaml"
    spec.write_text("dataset: shapes\nmethod: dho\nepochs: 3\n")
    with pytest.raises(ConfigError, match=r"^--set epochs = -1: expected an integer >= 1$"):
        load_spec([spec], ["epochs=-1"])
    with pytest.raises(ConfigError, match=r"^--set: unknown spec key\(s\) epochz;"):
        load_spec([spec], ["epochz=1"])
    spec.write_text("dataset: shapes\nmethod: dho\nepochs: -3\n")
    with pytest.raises(ConfigError, match=rf"^{spec}: key 'epochs' = -3"):
        load_spec([spec], ["lr=0.1"])


def test_bad_yaml_is_one_line_with_line_and_column(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text("dataset: shapes\n  method: [dho\n")
    assert cli.main(["train", "--spec", str(spec), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: spec file {spec} is not valid YAML/JSON: line 2, column 9: "
                   "mapping values are not allowed here"]
    assert cli.main(["train", "--spec", str(spec.with_name("none.yaml")), "--set", "lr=[1",
                     "--out", str(tmp_path / "run")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_fast_exit_runs_atexit_handlers_flushes_and_keeps_the_status(tmp_path):
    """``python -m dho`` ends with dho.cli.fast_exit (no module teardown): buffered output,
    atexit handlers and the exit status must survive it."""
    import subprocess
    import sys

    code = ("import atexit, sys; atexit.register(lambda: print('atexit ran')); "
            "from dho.cli import fast_exit; sys.stdout.write('x' * 100000); print(); fast_exit(3)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 3
    assert r.stdout == "x" * 100000 + "\natexit ran\n"
    r = subprocess.run([sys.executable, "-m", "dho", "submit", "--spec", str(tmp_path / "none.json"),
                        "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "none.json" in r.stderr

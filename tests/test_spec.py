"""RunSpec: types, ranges, merging of files and --set overrides, the spec hash."""

import json

import pytest

from dho.errors import ConfigError
from dho.spec import RunSpec, load_spec, parse_set


@pytest.mark.parametrize("key, value, match", [
    ("epochs", "three", r"key 'epochs' = 'three': expected int, got str"),
    ("epochs", 2.5, r"key 'epochs' = 2.5: expected int, got float"),
    ("epochs", True, r"key 'epochs' = True: expected int, got bool"),
    ("lr", "fast", r"key 'lr' = 'fast': expected float"),
    ("lr", float("nan"), r"key 'lr' = nan: expected a finite number"),
    ("split", "4shot", r"key 'split' = '4shot': expected dict"),
    ("student_pretrained", "yes", r"key 'student_pretrained' = 'yes': expected bool"),
    ("method", None, r"key 'method' is null"),
    ("tags", [1], r"key 'tags' = \[1\]: expected dict"),
])
def test_wrong_type_names_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        RunSpec.from_dict({key: value}, source="s.yaml")


@pytest.mark.parametrize("d, match", [
    ({"epochs": 0}, "key 'epochs' = 0: expected an integer >= 1"),
    ({"schedule": "step"}, "key 'schedule'"),
    ({"epoch_length": "both"}, "key 'epoch_length'"),
    ({"alpha": 1.5}, "key 'alpha'"),
    ({"warmup_start_factor": 2}, "key 'warmup_start_factor'"),
    ({"split": {"kind": "fewshot", "shots": 0}}, "key 'split.shots' = 0"),
    ({"split": {"kind": "percent", "percent": 120}}, "key 'split.percent' = 120"),
    ({"split": {"kind": "list"}}, "key 'split.file'"),
    ({"split": {"kind": "all"}}, "key 'split.kind' = 'all'"),
    ({"method_args": {"lam": [1]}}, "key 'method_args.lam'"),
    ({"dataset": ""}, "key 'dataset' = '': expected a non-empty string"),
    ({"nope": 1, "zzz": 2}, "unknown spec key\\(s\\) nope, zzz"),
])
def test_bad_values_are_config_errors(d, match):
    with pytest.raises(ConfigError, match=match):
        RunSpec.from_dict(d)


def test_ints_are_accepted_for_floats_and_defaults_validate():
    spec = RunSpec.from_dict({"lr": 1, "beta": 2})
    assert spec.lr == 1.0 and isinstance(spec.lr, float)
    RunSpec().validate()


def test_hash_ignores_paths_devices_and_tracking():
    a = RunSpec()
    b = RunSpec(data_root="/elsewhere", output_dir="/out", device="cpu", num_workers=7, mlflow_uri="x",
                mlflow_experiment="e", tags={"suite": "s"}, progress=False, teacher_file="t.pt",
                split_manifest="m.json")
    assert a.hash == b.hash and len(a.hash) == 16
    assert RunSpec(seed=2).hash != a.hash
    assert RunSpec(method_args={"lam": 0.3}).hash != a.hash
    assert RunSpec(teacher_sha="abc").hash != a.hash


def test_spec_json_of_a_run_reloads_and_its_hash_is_checked(tmp_path):
    spec = RunSpec(seed=3, epochs=5)
    d = {**spec.to_dict(), "spec_hash": spec.hash}
    assert RunSpec.from_dict(d).hash == spec.hash
    with pytest.raises(ConfigError, match="key 'spec_hash' = '0000' does not match"):
        RunSpec.from_dict({**d, "spec_hash": "0000"})


def test_load_spec_merges_files_then_overrides(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("epochs: 10\nsplit: {kind: fewshot, shots: 4}\nmethod_args: {lam: 0.5, temperature: 2}\n")
    over = tmp_path / "over.json"
    over.write_text(json.dumps({"seed": 7, "method_args": {"lam": 0.3}}))
    spec = load_spec([base, over], ["split.shots=16", "lr=5e-5", "tags.suite=grid", "progress=false"])
    assert spec.epochs == 10 and spec.seed == 7
    assert spec.method_args == {"lam": 0.3, "temperature": 2}
    assert spec.split == {"kind": "fewshot", "shots": 16}
    assert spec.lr == 5e-5 and spec.tags == {"suite": "grid"} and spec.progress is False


def test_load_spec_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="spec file not found: .*missing.yaml"):
        load_spec([tmp_path / "missing.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_spec([bad])
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        load_spec([listy])
    typo = tmp_path / "typo.yaml"
    typo.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match="typo.yaml: unknown spec key\\(s\\) epoch"):
        load_spec([typo])


def test_parse_set():
    assert parse_set(["a=1", "b.c=x", "d={k: 2}", "e="]) == {"a": 1, "b": {"c": "x"}, "d": {"k": 2}, "e": ""}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set(["novalue"])
    with pytest.raises(ConfigError, match="--set a: cannot parse"):
        parse_set(["a=[1"])

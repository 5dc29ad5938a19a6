"""The suite compiler (dho.suite) and the label-split value (dho.split), without Snakemake."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import yaml

from dho.errors import ConfigError
from dho.spec import RunSpec
from dho.split import LabelSplit, label_kind_rank, label_level
from dho.suite import TEACHER_KINDS, Cell, Workflow, compile_workflow

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())


def compiled(suite="ci", edit=None, **top) -> Workflow:
    config = copy.deepcopy(CONFIG)
    config.update(suite=suite, **top)
    if edit:
        edit(config["suites"])
    return Workflow(config, SCHEMA)


# -- LabelSplit ----------------------------------------------------------------------------
@pytest.mark.parametrize("d, name", [
    ({"kind": "fewshot", "shots": 4}, "4shot"), ({"kind": "percent", "percent": 1}, "1pct"),
    ({"kind": "percent", "percent": 12.5}, "12.5pct"), ({"kind": "percent", "percent": 10.0}, "10pct"),
    ({"kind": "list", "file": "lists/1percent.txt"}, "list-1percent"),
])
def test_label_split_round_trips(d, name):
    split = LabelSplit.from_dict(d)
    assert split.name == name
    again = LabelSplit.parse(name)
    assert again.name == name and again.kind == split.kind
    if split.kind != "list":  # a list split's name keeps only the file's stem
        assert again == split and again.to_dict() == split.to_dict()


@pytest.mark.parametrize("d, key", [
    ({"kind": "fewshot", "shots": 0}, "split.shots"), ({"kind": "fewshot", "shots": 2.5}, "split.shots"),
    ({"kind": "percent", "percent": 101}, "split.percent"), ({"kind": "percent", "percent": True}, "split.percent"),
    ({"kind": "list"}, "split.file"), ({"kind": "random"}, "split.kind"),
    ({"kind": "fewshot", "shots": 4, "percent": 1}, "split.percent"),
])
def test_label_split_rejects_bad_dicts_naming_the_key(d, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        LabelSplit.from_dict(d, source="spec x.json")


def test_label_split_flags_levels_and_order():
    assert LabelSplit.parse("16shot").cli_args() == ["--kind", "fewshot", "--shots", "16"]
    assert LabelSplit.parse("1pct").cli_args() == ["--kind", "percent", "--percent", "1"]
    assert [label_level(x) for x in ("4shot", "16-shot", "1%", "10 percent")] == [4, 16, 1, 10]
    assert label_level("custom", {"kind": "list", "file": "10percent.txt"}) == 10
    assert math.isnan(label_level("custom"))
    assert [label_kind_rank(x) for x in ("4shot", "1pct", "list-1percent")] == [0, 1, 2]
    with pytest.raises(ConfigError, match="'4shots'"):
        LabelSplit.parse("4shots")


def test_runspec_validates_its_split_through_label_split():
    with pytest.raises(ConfigError, match="split.shots"):
        RunSpec.from_dict({"split": {"kind": "fewshot", "shots": -1}}, source="spec s.yaml")


# -- grid, specs, paths, resources ------------------------------------------------------
def test_ci_grid_lists_methods_explicitly_and_asks_the_registry_for_teachers():
    suite = compiled().suite("ci")
    cells = {(c.method, c.teacher) for c in suite.grid}
    # ce needs no teacher (dho.methods), so it runs once with teacher "none"; every other listed
    # method (the comparison rows of issue 9 included) needs one
    assert {("ce", "none"), ("kd", "zs"), ("dho", "zs"), ("pseudo_label", "zs")} <= cells
    assert cells == {(m, "none" if m == "ce" else "zs") for m in suite.methods}


def test_student_methods_restrict_its_cells():
    """ci: every method on the ResNet-18; Table 2's students only with their `methods:`."""
    suite = compiled().suite("ci")
    by_student = {}
    for c in suite.grid:
        by_student.setdefault(c.student, set()).add(c.method)
    assert by_student["resnet18"] == set(suite.methods)
    for student in ("clip_tiny_frozen", "vpt_tiny", "coop_tiny"):
        assert by_student[student] == {"ce", "dho_labeled", "dho"}
    assert len(suite.grid) == len(suite.methods) + 3 * 3
    # linear_eval selects the ResNet-18's runs of its methods only
    assert {(c.student, c.method) for c in suite.linear_eval_cells()} == {
        ("resnet18", m) for m in ("kd_feature", "kd", "dho")}


def test_student_methods_must_be_the_suites():
    def typo(suites):
        suites["ci"]["students"]["vpt_tiny"]["methods"] = ["ce", "dhoo"]

    with pytest.raises(ConfigError, match="suites.ci.students.vpt_tiny.methods': unknown method 'dhoo'"):
        compiled(edit=typo).compiled()


def test_fewshot_grid_size():
    suite = compiled("fewshot").suite("fewshot")
    # 10 datasets x 5 shot levels x 2 students x (ce + {kd, dho, pseudo_label} x {zs, fs})
    assert len(suite.grid) == 10 * 5 * 2 * (1 + 3 * 2)
    assert len(suite.teacher_jobs()) == 10 + 10 * 5  # zs per dataset, fs per dataset x shots


def test_run_spec_layers_and_paths():
    def layers(suites):
        suites["fewshot"]["dataset_train"] = {"dtd": {"epochs": 20, "batch_size": 256}}
        suites["fewshot"]["methods"]["dho"]["train"] = {"batch_size": 128}

    suite = compiled("fewshot", edit=layers).suite("fewshot")
    cell = Cell("fewshot", "dtd", "4shot", "mobilenet_v2", "fs", "dho", 1)
    spec = suite.run_spec(cell)
    assert spec["epochs"] == 20 and spec["batch_size"] == 128   # suite < dataset_train < method
    assert spec["lr"] == 0.001 and spec["split"] == {"kind": "fewshot", "shots": 4}
    assert spec["teacher_file"] == "results/fewshot/teachers/dtd/4shot/split1/fs.pt"
    assert spec["output_dir"] == "results/fewshot/runs/dtd/4shot/mobilenet_v2/fs/dho/seed1"
    assert RunSpec.from_dict(spec).dataset == "dtd"  # a valid spec
    assert suite.resources("mobilenet_v2", "ce").mem_gb == 16  # methods layer
    assert suite.resources("mobilenet_v2", "dho").mem_gb == 32  # default layer


def test_resources_fall_back_on_the_launchers_defaults():
    from dho.launch import SlurmRequest

    def drop(suites):
        suites["ci"].pop("resources")

    res = compiled(edit=drop).suite("ci").resources("resnet18", "kd")
    d = SlurmRequest()
    assert (res.gpus, res.cpus, res.mem_gb, res.time_min) == (d.gpus, d.cpus, d.mem_gb, d.time_min)


def test_multi_node_runs_ask_for_their_nodes_and_share_cpus_among_ranks():
    """resources.nodes reaches `dho submit` (one data-parallel task per GPU of each node);
    cpus are per node, split among its tasks (8 GPUs, 64 CPUs: 8 CPUs per rank)."""
    from dho.launch import SlurmRequest

    def two_nodes(suites):
        suites["table3"]["resources"]["default"].update(nodes=2)

    wf = compiled("table3", edit=two_nodes)
    suite = wf.suite("table3")
    res = suite.resources("clip_vit_b16", "dho")
    assert res.nodes == 2 and "--gpus 8 --cpus 64" in res.flags() and res.flags().endswith(" --nodes 2")
    assert "--nodes" not in compiled("table3").suite("table3").resources("clip_vit_b16", "dho").flags()
    assert SlurmRequest(gpus=8, cpus=64, tasks_per_node=8).cpus_per_task == 8
    assert SlurmRequest(cpus=1, tasks_per_node=2).cpus_per_task == 1 and SlurmRequest(cpus=6).cpus_per_task == 6

    def zero_nodes(suites):
        suites["table3"]["resources"]["default"].update(nodes=0)

    with pytest.raises(ConfigError, match="suites.table3.resources.default.nodes"):
        compiled("table3", edit=zero_nodes).compiled()


def test_teacher_commands_come_from_the_kind_registry():
    suite = compiled("fewshot").suite("fewshot")
    job = suite.teacher_job_of("fs", "dtd", "2shot", "1")
    cmd = suite.teacher_command(job)
    assert cmd.startswith("teacher tip-adapter-f --dataset dtd --root data --base results/fewshot/teachers/dtd/zs.pt")
    assert "--split-manifest results/fewshot/splits/dtd/2shot/split1.json --seed 1" in cmd
    assert suite.teacher_inputs(job)["base"] == "results/fewshot/teachers/dtd/zs.pt"
    assert set(TEACHER_KINDS.names()) >= {"zeroshot", "tip_adapter_f"}


def test_demo_student_flags_follow_the_grid_student():
    suite = compiled("demo").suite("demo")
    assert suite.demo_student_flags("resnet18")[:4] == ["--width", "16", "--size", "32"]


def test_teacher_train_layer_and_method_teachers():
    """Table 1: alpha fixed per teacher (teachers[t].train) and baselines with the zero-shot teacher only."""
    suite = compiled("table1").suite("table1_fewshot")
    cells = {(c.method, c.teacher) for c in suite.grid if c.student == "resnet18_scratch" and c.labels == "4shot"}
    assert cells == {("ce", "none"), ("kd", "zs"), ("kd_feature", "zs"), ("sskd", "zs"), ("dhkd", "zs"),
                     ("dho", "zs"), ("dho", "fs")}
    assert len(suite.grid) == 5 * 2 * 7
    spec = lambda teacher: suite.run_spec(Cell("table1_fewshot", "imagenet", "4shot", "resnet18_scratch",  # noqa: E731
                                                teacher, "dho", 1))
    assert (spec("zs")["alpha"], spec("fs")["alpha"], spec("fs")["beta"]) == (0.4, 0.2, 0.5)  # suite < teacher

    def method_over_teacher(suites):
        suites["table1_fewshot"]["methods"]["dho"]["train"] = {"alpha": 0.7}

    suite = compiled("table1", edit=method_over_teacher).suite("table1_fewshot")
    assert suite.run_spec(Cell("table1_fewshot", "imagenet", "4shot", "resnet18_scratch", "fs", "dho", 1))["alpha"] == 0.7


def test_method_teachers_must_be_the_suites():
    def typo(suites):
        suites["table1_fewshot"]["methods"]["kd"]["teachers"] = ["zz"]

    with pytest.raises(ConfigError, match="suites.table1_fewshot.methods.kd.teachers': unknown teacher 'zz'"):
        compiled("table1", edit=typo).compiled()


@pytest.mark.parametrize("edit, key", [
    (lambda s: s["ci"]["methods"].update(nosuch={}), "suites.ci.methods.nosuch': unknown method 'nosuch'"),
    (lambda s: s["ci"]["train"].update(epochs=0), "key 'epochs' = 0"),
    (lambda s: s["ci"]["train"].update(epochz=3), "unknown spec key(s) epochz"),
    (lambda s: s["ci"].update(seeds="one"), "config key 'suites.ci.seeds'"),
    (lambda s: s["ci"]["teachers"]["zs"].update(kind="magic"), "suites.ci.teachers.zs.kind' = 'magic'"),
    (lambda s: s["ci"]["methods"].update(ce={"teacher": False}), "suites.ci.methods.ce"),
    (lambda s: s["ci"]["resources"]["default"].update(mem_gb=-1), "suites.ci.resources.default.mem_gb"),
    (lambda s: s["ci"].update(teachers={}), "suites.ci.teachers' is empty"),
])
def test_config_errors_name_the_key(edit, key):
    with pytest.raises(ConfigError) as e:
        compiled(edit=edit).compiled()
    assert key in str(e.value) and "\n" not in str(e.value)


def test_unknown_suite_names_the_key():
    with pytest.raises(ConfigError, match="config key 'suite': unknown suite 'nope'"):
        compiled("nope")


def test_group_compiles_every_member_and_ood_compiles_its_source():
    assert compiled("ablations").chosen == ["ablation_lambda", "ablation_heads"]
    w = compiled("ood")
    assert [s.name for s in w.compiled()] == ["ood", "imagenet_semi"]
    assert len(w.suite("ood").eval_jsons()) == 4 * 12


def test_spec_and_settings_files_are_rewritten_only_when_they_change(tmp_path):
    config = copy.deepcopy(CONFIG)
    config.update(suite="ci", results=str(tmp_path / "results"))
    w = compile_workflow(config, SCHEMA)
    spec_file = Path(w.suite("ci").spec_path(Cell("ci", "shapes", "2shot", "resnet18", "zs", "kd", 1)))
    assert json.loads(spec_file.read_text())["epochs"] == 2
    assert w.write_files() == 0  # nothing changed: nothing rewritten (mtimes kept)
    config["suites"]["ci"]["train"]["epochs"] = 3
    w = compile_workflow(config, SCHEMA)
    assert json.loads(spec_file.read_text())["epochs"] == 3
    config["suites"]["ci"]["demo"]["teacher_args"] = ["--steps", "31"]
    assert Workflow(config, SCHEMA).write_files() == 1  # the demo teacher's settings file only

# Paper-layout tables: results/paper/<name>.{md,csv,tex} for each paper table whose suites
# (the suite or group of the same name, README "Paper suites") are all being built.  Each
# reads the runs.csv of its training suites and the evals.csv of its evaluation suites
# (`dho paper-table`); the layouts live in dho/results/paper.py.

from dho.catalog import catalog

# layout name -> what it reads (dho.results.paper: LAYOUT_NAMES, get_layout(name).source),
# read without importing pandas/torch
PAPER_LAYOUTS = catalog()["paper_layouts"]


def paper_members(name):
    """The suites a paper table is built from: the group `name`, else the suite `name`."""
    if name in config["groups"]:
        return list(config["groups"][name])
    return [name] if name in config["suites"] else []


def paper_targets():
    """Paper tables whose suites are all chosen (`--config suite=table1`, `suite=paper`, ...)."""
    out = []
    for name in PAPER_LAYOUTS:
        members = paper_members(name)
        if members and all(m in SUITES for m in members):
            out += [f"{R}/paper/{name}.{ext}" for ext in ("md", "csv", "tex")]
    return out


def paper_inputs(wc):
    """The tables a layout reads: linear_eval.csv of the suites with a linear_eval block (its
    source "linear_eval", table5), else each suite's evals.csv / runs.csv."""
    if PAPER_LAYOUTS[wc.name] == "linear_eval":
        return [f"{R}/{s}/linear_eval.csv" for s in paper_members(wc.name) if "linear_eval" in config["suites"][s]]
    files = []
    for suite in paper_members(wc.name):
        kind = "evals" if "evaluate" in config["suites"][suite] else "runs"
        files.append(f"{R}/{suite}/{kind}.csv")
    return files


rule paper_table:
    """One paper table in the paper's layout: reproduced, reported and their difference."""
    input:
        paper_inputs,
    output:
        md=R + "/paper/{name}.md",
        csv=report(R + "/paper/{name}.csv", caption="../report/tables.rst", category="paper",
                   subcategory="{name}"),
        tex=R + "/paper/{name}.tex",
    wildcard_constraints:
        name="|".join(PAPER_LAYOUTS),
    params:
        inputs=lambda wc, input: " ".join(f"--{Path(f).stem.replace('_', '-')} {f}" for f in input),
        out_dir=R + "/paper",
    log:
        R + "/paper/logs/{name}.log",
    shell:
        "{PY} paper-table --layout {wildcards.name} {params.inputs} --out-dir {params.out_dir} > {log} 2>&1"

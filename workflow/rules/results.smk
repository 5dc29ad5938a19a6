# runs.csv of a suite, then tables, figures and the (alpha, beta) re-choice, each derived
# from runs.csv only.  Tables and figures are report() outputs: `snakemake --report
# results/report.html` gathers them with the captions in workflow/report/.


rule collect:
    """One row per done run of the suite's grid."""
    input:
        lambda wc: [S(wc).metrics_path(c) for c in S(wc).grid],
    output:
        R + "/{suite}/runs.csv",
    params:
        run_dirs=R + "/{suite}/run_dirs.txt",
    log:
        R + "/{suite}/logs/collect.log",
    run:
        Path(params.run_dirs).write_text("".join(str(Path(m).parent) + "\n" for m in input))
        shell("{PY} collect --suite {wildcards.suite} --run-dirs-file {params.run_dirs}"
              " --out {output} > {log} 2>&1")


rule tables:
    """Comparison and summary tables (md, csv, tex, html) of a suite."""
    input:
        R + "/{suite}/runs.csv",
    output:
        report(directory(R + "/{suite}/tables"), patterns=["{name}.html", "{name}.csv"],
               caption="../report/tables.rst", category="{suite}", subcategory="tables"),
    log:
        R + "/{suite}/logs/tables.log",
    shell:
        "{PY} tables --runs {input} --out-dir {output} > {log} 2>&1"


rule figures:
    """Accuracy, (alpha, beta) and gradient-cosine figures of a suite (PDF and PNG)."""
    input:
        R + "/{suite}/runs.csv",
    output:
        report(directory(R + "/{suite}/figures"), patterns=["{name}.png"],
               caption="../report/figures.rst", category="{suite}", subcategory="figures",
               labels={"figure": "{name}"}),
    log:
        R + "/{suite}/logs/figures.log",
    shell:
        "{PY} figures --runs {input} --out-dir {output} > {log} 2>&1"


rule rechoose:
    """DHO's (alpha, beta) chosen again on the saved validation logits, without retraining."""
    input:
        R + "/{suite}/runs.csv",
    output:
        report(R + "/{suite}/rechoose.csv", caption="../report/rechoose.rst",
               category="{suite}", subcategory="tables"),
    log:
        R + "/{suite}/logs/rechoose.log",
    shell:
        "{PY} rechoose --runs {input} --out {output} > {log} 2>&1"

# Baseline: hard pseudo-labels from the teacher, one head (dho.methods "pseudo_label").
# This file is all it takes: registration adds the method to every grid cell of the named
# suites (and so to runs.csv, the tables and the figures); the rule trains its run dirs.

register_baseline("pseudo_label", suites=["ci", "fewshot"], teacher=True)


use rule train as train_pseudo_label with:
    wildcard_constraints:
        method="pseudo_label",


ruleorder: train_pseudo_label > train

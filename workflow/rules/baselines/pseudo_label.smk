# pseudo_label runs (listed in a suite's `methods`) under their own rule name.

use rule train as train_pseudo_label with:
    wildcard_constraints:
        method="pseudo_label",


ruleorder: train_pseudo_label > train

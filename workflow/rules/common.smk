# The suite compiler (dho.suite) reads config.yaml once, here: schema, registries and every
# run's spec are checked now (a bad key stops the workflow with one `error: ...` line
# naming it), and every run's spec file is written (left alone when unchanged: its mtime
# is what makes Snakemake rerun exactly the runs whose spec changed).  Rules only look up
# what the compiler made and call `python -m dho ...`.

from dho.suite import Cell, compile_workflow, exit_on_config_error

def signed(fn):
    """``fn`` with its signature computed once: Snakemake inspects a rule's callable on every
    call (`inspect.signature`, ~2 CPU s of a dry run of every suite); the training rule's
    callables run several times per job."""
    import inspect

    fn.__signature__ = inspect.signature(fn)
    return fn


W = exit_on_config_error(compile_workflow, config, Path(workflow.basedir, "workflow/schemas/config.schema.yaml"))
R = W.results
PY = "python -m dho"
SUITES = W.chosen
RUN = "{dataset}/{labels}/{student}/{teacher}/{method}/seed{seed}"
RUN_DIR = R + "/{suite}/runs/" + RUN


def S(wc):
    """The compiled suite named by the rule's wildcards."""
    return W.suite(wc.suite)


def train_res(wc):
    """Resources of the training run (or its evaluation) named by the wildcards."""
    return S(wc).resources(wc.student, wc.method)


def teacher_res(wc):
    return S(wc).resources(teacher=True)

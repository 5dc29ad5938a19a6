"""The suite compiler: config.yaml's suites -> cells, specs, paths, resources, teacher jobs.

The workflow (Snakefile, workflow/rules/*.smk) compiles the config once when it is read
(:func:`compile_workflow`) and its rules only look things up; the unit tests reach all of
it without Snakemake (tests/test_suite.py).
"""

from .compiler import RUN, Cell, Resources, Suite, Workflow, compile_workflow, exit_on_config_error
from .config import chosen_suites, validate_config
from .teachers import TEACHER_KINDS, TeacherJob, TeacherKind

__all__ = ["RUN", "Cell", "Resources", "Suite", "Workflow", "compile_workflow", "exit_on_config_error",
           "chosen_suites", "validate_config", "TEACHER_KINDS", "TeacherJob", "TeacherKind"]

"""`snakemake -n` of every suite of config.yaml lists the same jobs (rule, outputs,
resources, each training run's spec) as the committed fixture tests/data/dry_run_jobs.json,
captured before the suite compiler moved from the Snakefile into the package (dho.suite).

A change that is meant to change a suite's jobs (a suite added to config.yaml, a grid
edited) regenerates the fixture with one command and says why in the commit:

    python tests/dry_run_jobs.py
"""

from __future__ import annotations

import json

import pytest

from dry_run_jobs import FIXTURE, config_suites, suite_jobs

pytestmark = pytest.mark.slow
EXPECTED = json.loads(FIXTURE.read_text())


def test_every_suite_has_a_captured_job_list():
    missing = sorted(set(config_suites()) - set(EXPECTED))
    assert not missing, f"suites {missing} have no captured job list: run python tests/dry_run_jobs.py"


@pytest.mark.parametrize("suite", sorted(EXPECTED))
def test_dry_run_jobs_unchanged(workdir, suite):
    jobs = suite_jobs(suite, workdir)
    assert len(jobs) == len(EXPECTED[suite])
    changed = sorted(set(jobs) ^ set(EXPECTED[suite]))
    assert not changed, "\n".join(changed[:20])

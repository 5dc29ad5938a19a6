"""The job list of `snakemake -n` for every suite of config.yaml, normalised (rule name,
outputs, resources, and for a training run a digest of its spec), and the one command
that regenerates the committed fixture tests/data/dry_run_jobs.json:

    python tests/dry_run_jobs.py          # rewrites tests/data/dry_run_jobs.json

Run it after a change that is *meant* to change a suite's jobs (a suite added to
config.yaml, a grid edited) and say why in the commit; tests/test_dry_run_jobs.py fails
whenever the workflow's jobs change without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import copy_repo

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests/data/dry_run_jobs.json"
# spec keys that say where a run lives, not what it is (added to the written spec so the
# README's one-run command finds its run directory)
SPEC_DIGEST_SKIP = frozenset({"output_dir"})


def spec_digest(spec: dict) -> str:
    kept = {k: v for k, v in spec.items() if k not in SPEC_DIGEST_SKIP}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def _spec_of(block: str, workdir: Path) -> dict | None:
    """The spec of a training job: the spec file the workflow wrote when it read the
    Snakefile, or the JSON printed in the job's shell command (before the compiler)."""
    m = re.search(r"--spec (\S+\.json)", block)
    if m and (workdir / m[1]).is_file():
        return json.loads((workdir / m[1]).read_text())
    m = re.search(r"printf '%s\\n' '(\{.*?\})' >", block)
    return json.loads(m[1]) if m else None


def parse_jobs(stdout: str, workdir: Path) -> list[str]:
    """One sorted line per job of a `snakemake -n -p` output."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", stdout):
        head = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if not head:
            continue
        out = re.search(r"^\s+output: (.*)$", block, re.M)
        outputs = sorted(re.sub(r" \([^)]*\)", "", o).strip() for o in out[1].split(", ")) if out else []
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        resources = [r for r in (res[1].split(", ") if res else []) if not r.startswith("tmpdir=")]
        line = f"{head[1]} {' '.join(outputs)} [{', '.join(resources)}]"
        spec = _spec_of(block, workdir) if head[1].startswith("train") else None
        jobs.append(line + (f" spec={spec_digest(spec)}" if spec is not None else ""))
    return sorted(jobs)


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e["PYTHONPATH"] = f"{REPO}{os.pathsep}{e['PYTHONPATH']}" if e.get("PYTHONPATH") else str(REPO)
    e["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return e


def suite_jobs(suite: str, workdir: Path) -> list[str]:
    """The normalised dry-run job list of ``suite`` in a fresh copy of the workflow."""
    p = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-n", "-p", "--config",
                        f"suite={suite}"], cwd=workdir, env=env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"snakemake -n --config suite={suite} failed:\n{p.stdout[-3000:]}")
    return parse_jobs(p.stdout, workdir)


def config_suites() -> list[str]:
    import yaml

    return list(yaml.safe_load((REPO / "config.yaml").read_text())["suites"])


def capture(suites: list[str]) -> dict[str, list[str]]:
    out = {}
    for suite in suites:
        with tempfile.TemporaryDirectory(prefix="dho-dry-") as tmp:
            out[suite] = suite_jobs(suite, copy_repo(Path(tmp)))
    return out


def main() -> int:
    jobs = capture(config_suites())
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(jobs, indent=1, sort_keys=True) + "\n")
    print(f"{FIXTURE}: " + ", ".join(f"{s} {len(j)} jobs" for s, j in jobs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

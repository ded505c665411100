"""The batch workflow on a real SLURM cluster, through ``--profile profiles/slurm``.

Needs a running SLURM cluster (``tests/slurm/start-slurm.sh`` brings one up on Debian, as
root) and a ``snakemake`` with the ``slurm`` extra installed. Environment:

- ``MATERIALIZER_SLURM_SNAKEMAKE``: that snakemake (default: ``snakemake`` on PATH, then
  the one beside the running Python).
- ``MATERIALIZER_START_SLURM=1``: start the cluster with tests/slurm/start-slurm.sh for
  this session, stop it at the end and check that no daemon is left running.
- ``MATERIALIZER_REQUIRE_SLURM=1`` (CI): no cluster or no plugin is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import read_any
from test_workflow_batch import combined_manifest, dump, write_csv

ROOT = Path(__file__).resolve().parents[1]
START_SCRIPT = ROOT / "tests" / "slurm" / "start-slurm.sh"
REQUIRE = os.environ.get("MATERIALIZER_REQUIRE_SLURM") == "1"
START = os.environ.get("MATERIALIZER_START_SLURM") == "1"
DAEMONS = ("slurmctld", "slurmd", "slurmdbd")
# The plugin's first status check otherwise waits 40 s.
SLURM_ARGS = ("--profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks", "2")


def unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"MATERIALIZER_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


def sinfo_ok() -> bool:
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and any(
        s in done.stdout for s in ("idle", "mixed", "allocated"))


def running_daemons() -> list[str]:
    done = subprocess.run(["ps", "-o", "comm=", *[a for d in DAEMONS for a in ("-C", d)]],
                          capture_output=True, text=True, check=False)
    return done.stdout.split()


@pytest.fixture(scope="session")
def cluster():
    """A reachable SLURM cluster; started and stopped here when MATERIALIZER_START_SLURM=1."""
    if START:
        done = subprocess.run(["bash", str(START_SCRIPT)], capture_output=True, text=True,
                              timeout=600, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    if not sinfo_ok():
        unavailable("no SLURM cluster is reachable (`sinfo` fails; start one with "
                    "tests/slurm/start-slurm.sh)")
    yield
    if START:
        done = subprocess.run(["bash", str(START_SCRIPT), "--stop"], capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert running_daemons() == [], "SLURM daemons still running after --stop"
        assert not sinfo_ok()


@pytest.fixture(scope="session")
def snakemake_bin(cluster) -> str:
    """The snakemake that has the SLURM executor plugin."""
    found = (os.environ.get("MATERIALIZER_SLURM_SNAKEMAKE") or shutil.which("snakemake")
             or shutil.which("snakemake", path=os.path.dirname(sys.executable)))
    if not found or not os.access(found, os.X_OK):
        unavailable("no snakemake found (set MATERIALIZER_SLURM_SNAKEMAKE)")
    with open(found, encoding="utf-8", errors="replace") as handle:
        shebang = handle.readline()
    python = shebang[2:].strip() if shebang.startswith("#!") else "python3"
    probe = subprocess.run([python, "-c", "import snakemake_executor_plugin_slurm"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        unavailable(f"{found} has no snakemake-executor-plugin-slurm (pip install -e "
                    "'.[workflow,slurm]' into its environment)")
    return found


def project_copy(folder: Path) -> Path:
    """What a user has: the workflow, the example config and the profiles."""
    for name in ("workflow", "config", "profiles"):
        shutil.copytree(ROOT / name, folder / name,
                        ignore=shutil.ignore_patterns("__pycache__", ".snakemake"))
    return folder


def run(snakemake: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([snakemake, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)


def on_slurm(snakemake: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # -c 1: a group job runs its tables one after another (the plugin starts it with
    # --jobs 1), so it needs one CPU and the sum of the runtimes.
    return run(snakemake, cwd, *SLURM_ARGS, "-c", "1", *args)


def reports(base: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(base.glob("**/reports/*.json"))]


def submitted_ids(done: subprocess.CompletedProcess[str]) -> set[str]:
    """Job ids as Snakemake reports them (slurm plugin, or cluster-generic's sbatch)."""
    found = re.findall(r"submitted with SLURM jobid (\d+)|with external jobid '(\d+)'",
                       done.stdout + done.stderr)
    return {a or b for a, b in found}


def sacct_states(job_ids: set[str]) -> dict[str, str]:
    done = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobIDRaw,State",
                           "-j", ",".join(sorted(job_ids))],
                          capture_output=True, text=True, check=True)
    return dict(line.split("|", 1) for line in done.stdout.splitlines() if "|" in line)


def table_hosts(base: Path) -> dict[str, dict]:
    """Each finished table's run_provenance.host, from its audit."""
    hosts = {}
    for report in reports(base):
        for table in report["tables"]:
            if table["status"] == "ok":
                audit = json.loads((base / table["audit_json"]).read_text())
                hosts[table["id"]] = audit["run_provenance"]["host"]
    return hosts


def outcome(table: dict) -> tuple:
    return table["status"], table.get("summary"), table.get("error")


def assert_same_table(local: Path, remote: Path, table: dict) -> None:
    pd.testing.assert_frame_equal(read_any(local / table["out"]), read_any(remote / table["out"]))


def assert_ran_on_slurm(done, base: Path, tables: set[str], state: str) -> set[str]:
    """Every table in ``tables`` ran inside a SLURM job that Snakemake submitted and sacct
    knows; returns those job ids."""
    hosts = table_hosts(base)
    assert tables <= set(hosts)
    ids = {hosts[t]["slurm_job_id"] for t in tables}
    assert None not in ids
    assert all(hosts[t]["executor"] == "slurm" for t in tables)
    assert ids <= submitted_ids(done)
    states = sacct_states(ids)
    assert set(states) == ids
    assert set(states.values()) == {state}
    return ids


@pytest.fixture(scope="module")
def local_example(snakemake_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped example, run locally: what every cluster run must reproduce."""
    local = project_copy(tmp_path_factory.mktemp("local-example"))
    assert run(snakemake_bin, local).returncode == 0
    return local


def assert_example_as_local(done, local: Path, remote: Path) -> None:
    """Every table ran in a SLURM job (fewer jobs than tables), outputs as locally."""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    local_reports, remote_reports = reports(local), reports(remote)
    tables = [t for report in remote_reports for t in report["tables"]]
    ids = assert_ran_on_slurm(done, remote, {t["id"] for t in tables}, "COMPLETED")
    assert len(ids) < len(tables)  # tiny tables share a submission (group-components)
    for mine, theirs in zip(remote_reports, local_reports, strict=True):
        assert mine["status"] == theirs["status"] == "ok"
        assert mine["summary"] == theirs["summary"]
        assert [outcome(t) for t in mine["tables"]] == [outcome(t) for t in theirs["tables"]]
        # the reports are written on the submitting host, not in a SLURM job
        assert mine["run_provenance"]["host"]["slurm_job_id"] is None
    for table in tables:
        assert_same_table(local, remote, table)


def test_example_runs_as_grouped_slurm_jobs_with_the_same_outputs_as_a_local_run(
        snakemake_bin: str, local_example: Path, tmp_path: Path) -> None:
    remote = project_copy(tmp_path)
    done = on_slurm(snakemake_bin, remote)
    assert_example_as_local(done, local_example, remote)
    dry = run(snakemake_bin, remote, *SLURM_ARGS, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_cluster_generic_profile_submits_with_sbatch_and_polls_its_status_script(
        snakemake_bin: str, local_example: Path, tmp_path: Path) -> None:
    remote = project_copy(tmp_path)
    done = run(snakemake_bin, remote, "--profile", "profiles/cluster-generic", "-c", "1",
               "--seconds-between-status-checks", "1")
    assert_example_as_local(done, local_example, remote)


def test_failing_chained_table_on_slurm_is_reported_as_locally_and_the_rerun_resumes(
        snakemake_bin: str, tmp_path: Path) -> None:
    local = project_copy(tmp_path / "local")
    remote = project_copy(tmp_path / "remote")
    for base in (local, remote):
        dump(base / "manifest.yaml", combined_manifest(base))
        write_csv(base / "data" / "labels.csv", "clip_id,mos\nc1,3.0\n")  # 1/3 < 1.0
    assert run(snakemake_bin, local, "--configfile", "manifest.yaml").returncode != 0

    done = on_slurm(snakemake_bin, remote, "--configfile", "manifest.yaml")
    assert done.returncode != 0
    local_mos, local_so = reports(local)
    mos, so = reports(remote)
    assert mos["status"] == so["status"] == "failed"
    main, extra = mos["tables"]
    assert outcome(main) == outcome(local_mos["tables"][0])  # same one-line error
    assert main["status"] == "error" and "match rate" in main["error"]
    assert outcome(so["tables"][0]) == outcome(local_so["tables"][0])  # not run: upstream
    # Tables of the failed table's group that had not started yet are "not run" on SLURM
    # (Snakemake stops a group at its first failure); a table that ran is as locally.
    if extra["status"] == "ok":
        assert outcome(extra) == outcome(local_mos["tables"][1])
        assert_same_table(local, remote, extra)
    else:
        assert extra["error"] == "not run: the run stopped before this table"
    failed_job = submitted_ids(done)
    assert set(sacct_states(failed_job).values()) == {"FAILED"}
    assert not (remote / main["out"]).exists()

    # Resume: fix the labels, run the same command again.
    for base in (local, remote):
        write_csv(base / "data" / "labels.csv", "clip_id,mos\nc1,3.0\nc2,4.0\nc3,2.5\n")
    before = table_hosts(remote)
    assert run(snakemake_bin, local, "--configfile", "manifest.yaml").returncode == 0
    done = on_slurm(snakemake_bin, remote, "--configfile", "manifest.yaml")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rerun = {"main", "main-dover"} | ({"extra"} - set(before))
    ids = assert_ran_on_slurm(done, remote, rerun, "COMPLETED")
    assert not ids & failed_job
    assert {t: h for t, h in table_hosts(remote).items() if t not in rerun} == before
    for mine, theirs in zip(reports(remote), reports(local), strict=True):
        assert mine["status"] == "ok"
        assert [outcome(t) for t in mine["tables"]] == [outcome(t) for t in theirs["tables"]]
        for table in mine["tables"]:
            assert_same_table(local, remote, table)

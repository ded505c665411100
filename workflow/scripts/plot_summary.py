"""Front-page summary of the report: every table's status, then provenance."""
# ruff: noqa: F821  (snakemake is injected by Snakemake's script directive)
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115 (for the whole job)

try:
    from materializer import plots
except ImportError:  # a conda job environment (workflow/envs/report.yaml): use this checkout
    sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
    from materializer import plots

plots.batch_summary(list(snakemake.input.reports), snakemake.output.summary)

"""Bar chart of match rate per MOS table, the minimum marked, and its caption."""
# ruff: noqa: F821  (snakemake is injected by Snakemake's script directive)
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115 (for the whole job)

try:
    from materializer import plots
except ImportError:  # a conda job environment (workflow/envs/report.yaml): use this checkout
    sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
    from materializer import plots

reports = [plots.read_json(path) for path in snakemake.input.reports]
plots.match_rate_chart(reports, snakemake.output.chart, snakemake.output.caption)

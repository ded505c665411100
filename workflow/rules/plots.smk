# Figures and HTML fragments for `snakemake --report report.html` (Snakemake's own report).
# One plot job per table, keyed on that table's out and audit only: a table that reruns
# re-plots alone. Per-table plots are `run:` blocks (threads, no interpreter start-up per
# job); the front-page summary and the match-rate chart are scripts reading the batch
# reports.
# Paths live in materializer.report_layout (light: parsed with the workflow); figures in
# materializer.plots, imported by the jobs that draw them.
from materializer import report_layout

PLOTS = report_layout.PlotLayout(
    os.path.join(os.path.dirname(shown(MANIFEST.sections[0].report_json)), "plots")
)
# Per-table figures: as `report_plots` says; without it, for up to 100 tables (each is a
# job of ~0.1 s). The summary and the match-rate chart are always made.
PER_TABLE = MANIFEST.tables if MANIFEST.report_plots else []
if MANIFEST.report_plots_requested is None and not PER_TABLE:
    print(
        f"report: {len(MANIFEST.tables)} tables, so no per-table figures"
        " (`report_plots: true` in the manifest draws them)",
        file=sys.stderr,
    )
PLOTTED_TABLES = [
    report_layout.PlottedTable(t.kind, t.id, smk(t.out), smk(t.audit_json))
    for t in PER_TABLE
]
BATCH_REPORTS = [shown(s.report_json) for s in MANIFEST.sections]
# `snakemake --report` (without --report-after-run) runs no job: it gets only the plots
# that exist, and a summary rebuilt from the batch reports a failed run left.
PLOT_TARGETS = report_layout.report_targets(
    PLOTS,
    PLOTTED_TABLES,
    BATCH_REPORTS,
    has_mos=any(s.kind == "mos-labels" for s in MANIFEST.sections),
    reporting="--report-after-run" not in sys.argv
    and any(arg == "--report" or arg.startswith("--report=") for arg in sys.argv),
    log=sys.stderr,
)


report: "../report/workflow.rst"


rule plot_summary:
    input:
        reports=BATCH_REPORTS,
    output:
        summary=report(
            PLOTS.summary,
            caption="../report/summary.rst",
            category="Summary",
            labels={"figure": "status of every table"},
        ),
    log:
        "logs/plots/summary.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/plot_summary.py"


if any(s.kind == "mos-labels" for s in MANIFEST.sections):

    rule plot_match_rate:
        input:
            reports=BATCH_REPORTS,
        output:
            chart=report(
                PLOTS.chart["chart"],
                caption="../report/match_rate.rst",
                category="Summary",
                labels={"figure": "match rate per table"},
            ),
            caption=PLOTS.chart["caption"],
        log:
            "logs/plots/match-rate.log",
        localrule: True
        conda:
            "../envs/report.yaml"
        script:
            "../scripts/plot_match_rate.py"


for _table in [t for t in PER_TABLE if t.kind == "mos-labels"]:

    rule:
        name:
            f"plot_{rule_name(_table)}"
        input:
            table=smk(_table.out),
            audit=smk(_table.audit_json),
        output:
            histogram=report(
                PLOTS.table_files(_table.kind, _table.id)["histogram"],
                caption="../report/mos_histogram.rst",
                category="MOS labels",
                labels={"table": _table.id, "figure": "mos histogram"},
            ),
            caption=PLOTS.table_files(_table.kind, _table.id)["caption"],
            notes=report(
                PLOTS.table_files(_table.kind, _table.id)["notes"],
                caption="../report/table_notes.rst",
                category="Tables",
                labels={"table": _table.id, "kind": "MOS labels"},
            ),
        log:
            f"logs/plots/{_table.kind}/{_table.id}.log",
        localrule: True
        params:
            table_id=_table.id,
        run:
            from materializer.plots import mos_plots

            mos_plots(params.table_id, input, output, log[0])


for _table in [t for t in PER_TABLE if t.kind == "second-opinion"]:

    rule:
        name:
            f"plot_{rule_name(_table)}"
        input:
            table=smk(_table.out),
            audit=smk(_table.audit_json),
        output:
            scatters=report(
                directory(PLOTS.table_files(_table.kind, _table.id)["scatters"]),
                patterns=["{competitor}.png"],
                caption="../report/scatter.rst",
                category="Second opinion",
                labels={"table": _table.id, "competitor": "{competitor}"},
            ),
            notes=report(
                PLOTS.table_files(_table.kind, _table.id)["notes"],
                caption="../report/table_notes.rst",
                category="Tables",
                labels={"table": _table.id, "kind": "Second opinion"},
            ),
        log:
            f"logs/plots/{_table.kind}/{_table.id}.log",
        localrule: True
        params:
            table_id=_table.id,
        run:
            from materializer.plots import second_opinion_plots

            second_opinion_plots(params.table_id, input, output, log[0])

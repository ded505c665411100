# Figures and HTML fragments for `snakemake --report report.html` (Snakemake's own report).
# One plot job per table, keyed on that table's out and audit only: a table that reruns
# re-plots alone. Per-table plots are `run:` blocks (threads, no interpreter start-up per
# job); the front-page summary and the match-rate chart are scripts reading the batch
# reports. Paths live in materializer.report_layout (light: parsed with the workflow);
# figures in materializer.plots, imported by the jobs that draw them. Nothing is drawn
# while the workflow is parsed.
REPORT = RUN.report
if REPORT.note:
    print(REPORT.note, file=sys.stderr)


rule plot_summary:
    input:
        reports=REPORT.batch_reports,
    output:
        summary=report(
            REPORT.layout.summary,
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


if REPORT.has_mos:

    rule plot_match_rate:
        input:
            reports=REPORT.batch_reports,
        output:
            chart=report(
                REPORT.layout.chart["chart"],
                caption="../report/match_rate.rst",
                category="Summary",
                labels={"figure": "match rate per table"},
            ),
            caption=REPORT.layout.chart["caption"],
        log:
            "logs/plots/match-rate.log",
        localrule: True
        conda:
            "../envs/report.yaml"
        script:
            "../scripts/plot_match_rate.py"


for _table in REPORT.of_kind("mos-labels"):
    _files = REPORT.layout.table_files(_table.kind, _table.id)

    rule:
        name:
            f"plot_{runs.rule_name(_table)}"
        input:
            table=_table.out,
            audit=_table.audit,
        output:
            histogram=report(
                _files["histogram"],
                caption="../report/mos_histogram.rst",
                category="MOS labels",
                labels={"table": _table.id, "figure": "mos histogram"},
            ),
            caption=_files["caption"],
            notes=report(
                _files["notes"],
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


for _table in REPORT.of_kind("second-opinion"):
    _files = REPORT.layout.table_files(_table.kind, _table.id)

    rule:
        name:
            f"plot_{runs.rule_name(_table)}"
        input:
            table=_table.out,
            audit=_table.audit,
        output:
            scatters=report(
                directory(_files["scatters"]),
                patterns=["{competitor}.png"],
                caption="../report/scatter.rst",
                category="Second opinion",
                labels={"table": _table.id, "competitor": "{competitor}"},
            ),
            agreement=report(
                _files["agreement"],
                caption="../report/agreement.rst",
                category="Agreement",
                labels={"table": _table.id, "figure": "agreement with MOS"},
            ),
            pairwise=report(
                directory(_files["pairwise"]),
                patterns=["{figure}.png"],
                caption="../report/pairwise.rst",
                category="Agreement",
                labels={"table": _table.id, "figure": "{figure}"},
            ),
            notes=report(
                _files["notes"],
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

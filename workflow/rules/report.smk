# One batch-v1 report per manifest section, after all of its tables. It reads the
# manifest (for ids and configs), so editing the manifest reruns the report only.
# After a failed run the Snakefile's onerror writes them instead (RUN.after_failure).
for _section in MANIFEST.sections:

    rule:
        name:
            f"report__{_section.key}"
        input:
            manifest=runs.shown(MANIFEST.path),
            tables=RUN.section_outputs(_section),
        output:
            json=runs.shown(_section.report_json),
            md=runs.shown(_section.report_md),
        log:
            f"logs/report/{_section.key}.log",
        localrule: True
        params:
            section=_section.key,
        run:
            RUN.report_job(params.section, log[0], executor=executor())

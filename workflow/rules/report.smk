# One batch-v1 report per manifest section, after all of its tables. It reads the
# manifest (for ids and configs), so editing the manifest reruns the report only.
for _section in MANIFEST.sections:

    rule:
        name:
            f"report__{_section.key}"
        input:
            manifest=shown(MANIFEST.path),
            tables=section_outputs(_section),
        output:
            json=shown(_section.report_json),
            md=shown(_section.report_md),
        log:
            f"logs/report/{_section.key}.log",
        localrule: True
        params:
            section=_section.key,
        run:
            report_job(params.section, log[0])


onerror:
    after_failure()

# One job per second-opinion table of the manifest (defined in a loop: outputs are arbitrary
# paths, so no wildcards). Only this table's inputs and options are its rerun triggers.
for _table in [t for t in MANIFEST.tables if t.kind == "second-opinion"]:

    rule:
        name:
            rule_name(_table)
        input:
            features=smk(_table.features),
            scores=[smk(p) for p in _table.source_paths],
        output:
            table=smk(_table.out),
            audit=smk(_table.audit_json),
        log:
            log_path(_table),
        group:
            "tables"
        threads: 1
        resources:
            mem_mb=table_mem_mb(_table),
            runtime=table_runtime(_table),
        params:
            spec=table_params(_table),
        run:
            run_table_job("second-opinion", params.spec, log[0], "second_opinion.smk")

# One job per manifest table, of either kind (defined in a loop: outputs are arbitrary
# paths, so no wildcards). Only this table's inputs and options are its rerun triggers.
for _table in MANIFEST.tables:

    rule:
        name:
            runs.rule_name(_table)
        input:
            features=RUN.tracked(_table.features),
            sources=[RUN.tracked(p) for p in _table.source_paths],
        output:
            table=RUN.tracked(_table.out),
            audit=RUN.tracked(_table.audit_json),
        log:
            runs.log_path(_table),
        group:
            "tables"
        threads: 1
        resources:
            mem_mb=RUN.table_mem_mb(_table),
            runtime=RUN.table_runtime(_table),
        params:
            spec=table_params(_table),
        run:
            RUN.run_table(params.spec, log[0], executor=executor())

# `snakemake verify`: re-hash every file the batch reports cite (materialize-verify).
# It checks the reports as they are on disk and never reruns a job first: no inputs (a
# changed label must show up as `changed`, not be joined again), no outputs, so it runs
# whenever it is asked for and is never part of `all`. One line per file goes to the log
# (shown when the check fails), the summary to the terminal.
from materializer import verify as verify_command


rule verify:
    log:
        "logs/verify/verify.log",
    localrule: True
    params:
        reports=RUN.batch_reports(),
    run:
        verify_command.check_reports(params.reports, log[0])

"""Reporting on runs, apart from the pipeline that produces them.

``cards`` (README cards of data and adapter folders), ``plots`` (every PNG), ``runs`` (reading run directories),
``markdown`` (``report.md``), ``wandb_report`` (the optional W&B Report), ``summary`` (a run's ``summary.json``
and end-of-run table) and ``compare`` (the CLI: ``python -m selflen.report.compare RUN_DIR... | --sweep DIR``).
Nothing is imported here, so importing one module does not load matplotlib or W&B.
"""

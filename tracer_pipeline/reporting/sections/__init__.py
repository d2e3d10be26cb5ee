"""The sections of an experiment report, one module per question it answers.

Each section is a function ``section(report, ...) -> list[str]``: it adds its tables and figures
to the :class:`~tracer_pipeline.reporting.data.Report` and returns its Markdown lines.
:func:`tracer_pipeline.reporting.report.build_report` assembles them in order.
"""

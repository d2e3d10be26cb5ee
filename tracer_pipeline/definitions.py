"""The entry point ``dagster dev``, ``workspace.yaml`` and ``[tool.dagster]`` load: the code
location built from the settings in this process's environment (see ``tracer_pipeline.settings``)."""

from tracer_pipeline.defs import build_defs
from tracer_pipeline.settings import Settings

defs = build_defs(Settings.resolve())

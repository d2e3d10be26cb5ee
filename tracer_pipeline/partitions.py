import dagster as dg

# One key per run (its run id): every per-run asset shares it, so one Dagster run can carry a
# run's whole chain (and several runs' chains in lockstep) with the models loaded once.
runs_partitions = dg.DynamicPartitionsDefinition(name="runs")

# One key per experiment name, for the per-experiment analysis and report.
experiments_partitions = dg.DynamicPartitionsDefinition(name="experiments")

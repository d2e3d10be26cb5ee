import warnings

import dagster as dg

# BackfillPolicy is beta in Dagster 1.13; single-run backfills are how runs advance in lockstep.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")

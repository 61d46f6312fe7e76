"""The one Dagster code location of rosterbridge."""

import dagster as dg

from pipeline.resources import build_resources

defs = dg.Definitions.merge(
    dg.Definitions(resources=build_resources()),
)

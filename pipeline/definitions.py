"""The one Dagster code location of rosterbridge."""

import dagster as dg

from assets import extract, transform
from pipeline import connectivity
from pipeline.resources import build_resources

defs = dg.Definitions.merge(
    extract.defs,
    transform.defs,
    connectivity.defs,
    dg.Definitions(resources=build_resources()),
)

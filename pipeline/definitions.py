"""The one Dagster code location of rosterbridge."""

import dagster as dg

from assets import extract, transform
from assets import upload
from assets import passback
from pipeline import connectivity
from pipeline import schedules, sensors
from pipeline import passback_sensor
from pipeline.resources import build_resources

defs = dg.Definitions.merge(
    extract.defs,
    transform.defs,
    connectivity.defs,
    upload.defs,
    schedules.defs,
    sensors.defs,
    passback.defs,
    passback_sensor.defs,
    dg.Definitions(resources=build_resources()),
)

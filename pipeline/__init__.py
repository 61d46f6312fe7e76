"""rosterbridge: OneRoster 1.1 SIS -> Canvas LMS provisioning and grade passback on Dagster."""

"""The load generator: arrival schedules, seeded workloads, the runner, and `inferwatch load` as a job."""

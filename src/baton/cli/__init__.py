"""The `baton` command: inspect runs, the dead-letter queue and the event log of a store."""

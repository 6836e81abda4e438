"""Durable execution: workflows, steps, checkpoints, retries, recovery."""

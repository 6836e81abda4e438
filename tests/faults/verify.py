"""What must hold on a PostgreSQL store after the fault tests, read with plain SQL.

`problems` returns a list of what is wrong (empty when all is well), so a failing test shows
everything at once; `Facts` carries what the test reports (re-executions, moved runs).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from .harness import Db, Effects, expected_value

SEQS = (1, 2, 3)


def writer_pid(worker_id: str) -> int:
    """The pid in a worker id `host:pid:hex`."""
    return int(worker_id.rsplit(":", 2)[1])


def source_pid(source: str) -> int:
    """The pid in an event source `baton://host/pid`."""
    return int(source.rsplit("/", 1)[1])


@dataclass
class Facts:
    run_ids: dict[int, str] = field(default_factory=dict)  # job -> run id
    writers: dict[tuple[str, int], str] = field(default_factory=dict)  # (run, seq) -> worker id
    reexecuted: dict[tuple[str, int], list[int]] = field(default_factory=dict)  # -> pids
    claims: dict[str, list[str]] = field(default_factory=dict)  # run -> workers, claim order
    recovered: int = 0  # baton.run.recovered events


def problems(
    db: Db, jobs: Iterable[int], effects: Effects, cut: Collection[int] | None
) -> tuple[list[str], Facts]:
    """Every job has one run, SUCCEEDED with the right result, completed once, each step
    checkpointed once; a step executed more than once only where the earlier executions
    were by processes in `cut` (killed, frozen, cut off; None: by anyone, any number of
    times, as after a lost connection)."""
    out: list[str] = []
    facts = Facts()
    wanted = {f"job-{j}": j for j in jobs}
    runs = db.rows("SELECT idempotency_key, run_id, status, output, fence FROM runs")
    by_key: dict[str, list[tuple]] = defaultdict(list)
    for key, run_id, status, output, fence in runs:
        by_key[key].append((run_id, status, output, fence))
    for key in sorted(set(by_key) - set(wanted), key=str):
        out.append(f"unexpected run(s) {by_key[key]} with key {key!r}")
    outputs: dict[str, dict] = {}
    for key, job in sorted(wanted.items(), key=lambda kv: kv[1]):
        found = by_key.get(key, [])
        if len(found) != 1:
            out.append(f"{key}: {len(found)} runs, expected exactly 1 (lost run?)")
            continue
        run_id, status, output, _ = found[0]
        facts.run_ids[job] = run_id
        if status != "SUCCEEDED":
            out.append(f"{key} ({run_id}): {status}, expected SUCCEEDED")
            continue
        doc = json.loads(output)
        outputs[run_id] = doc
        if doc.get("job") != job or doc.get("value") != expected_value(job):
            out.append(f"{key} ({run_id}): output {doc}, expected value {expected_value(job)}")

    ids = set(facts.run_ids.values())
    steps = db.rows("SELECT run_id, seq, status, kind, written_by FROM steps")
    seen: Counter[tuple[str, int]] = Counter()
    for run_id, seq, status, kind, written_by in steps:
        seen[(run_id, seq)] += 1
        facts.writers[(run_id, seq)] = written_by
        if status != "SUCCEEDED" or kind != "step":
            out.append(f"step ({run_id}, {seq}): {status} {kind}")
    for run_id in sorted(ids):
        for seq in SEQS:
            if seen[(run_id, seq)] != 1:
                out.append(f"step ({run_id}, {seq}): {seen[(run_id, seq)]} rows")
        doc = outputs.get(run_id)
        if doc is not None:  # the result is built from the checkpointed step results
            writers = [facts.writers.get((run_id, s)) for s in SEQS]
            pids = [writer_pid(w) if w else None for w in writers]
            if doc.get("by") != pids:
                out.append(f"run {run_id}: steps ran by {doc.get('by')}, checkpoints by {pids}")

    events = db.rows(
        "SELECT type, run_id, source, (data::jsonb)->>'seq', (data::jsonb)->>'worker' "
        "FROM events ORDER BY seq"
    )
    succeeded: Counter[str] = Counter()
    completed: dict[tuple[str, int], list[int]] = defaultdict(list)
    for type_, run_id, source, seq, worker in events:
        if type_ == "baton.run.succeeded":
            succeeded[run_id] += 1
        elif type_ == "baton.step.completed":
            completed[(run_id, int(seq))].append(source_pid(source))
        elif type_ == "baton.run.started":
            facts.claims.setdefault(run_id, []).append(worker)
        elif type_ == "baton.run.recovered":
            facts.recovered += 1
        elif type_ in ("baton.run.failed", "baton.run.dead", "baton.step.failed"):
            out.append(f"run {run_id}: unexpected {type_} event")
    for run_id in sorted(ids):
        if succeeded[run_id] != 1:
            out.append(f"run {run_id}: {succeeded[run_id]} baton.run.succeeded events")
        for seq in SEQS:
            sources = completed.get((run_id, seq), [])
            writer = facts.writers.get((run_id, seq))
            if len(sources) != 1:
                out.append(f"step ({run_id}, {seq}): {len(sources)} step.completed events")
            elif writer is not None and sources[0] != writer_pid(writer):
                out.append(f"step ({run_id}, {seq}): event from pid {sources[0]}, row by {writer}")
    for key in sorted(set(completed) - {(r, s) for r in ids for s in SEQS}):
        out.append(f"step.completed event(s) {completed[key]} for unknown step {key}")

    # executions: once, unless the earlier executors were cut off from the run
    for key, pids in sorted(effects.execs.items()):
        if key[0] not in ids:
            out.append(f"execution of {key} by {pids} for an unknown run")
            continue
        writer = facts.writers.get(key)
        if cut is not None and len(set(pids)) != len(pids):
            out.append(f"step {key} executed {pids}: twice in one process")
        if writer is None or writer_pid(writer) not in pids:
            out.append(f"step {key} checkpointed by {writer}, executed by {pids}")
            continue
        if len(pids) > 1:
            facts.reexecuted[key] = pids
            earlier = [p for p in pids if p != writer_pid(writer)]
            innocent = [p for p in earlier if cut is not None and p not in cut]
            if innocent:
                out.append(f"step {key} executed by {pids}: {innocent} were not cut off")
    for run_id in sorted(ids):
        for seq in SEQS:
            if (run_id, seq) not in effects.execs:
                out.append(f"step ({run_id}, {seq}) checkpointed but never executed")
    return out, facts


def moved_runs(facts: Facts, cut_workers: Collection[str]) -> tuple[int, list[str]]:
    """(runs claimed more than once, problems): a run may move to another claim only from a
    worker in `cut_workers`."""
    out = []
    moved = 0
    for run_id, workers in sorted(facts.claims.items()):
        if len(workers) > 1:
            moved += 1
            innocent = [w for w in workers[:-1] if w not in cut_workers]
            if innocent:
                out.append(f"run {run_id} claimed by {workers}: {innocent} were not cut off")
    return moved, out


def report(found: list[str], context: str, limit: int = 40) -> str:
    shown = "\n  ".join(found[:limit])
    more = f"\n  ... and {len(found) - limit} more" if len(found) > limit else ""
    return f"{context}: {len(found)} problem(s):\n  {shown}{more}"

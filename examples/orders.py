"""Order processing on the embedded SQLite store (`make demo`).

- `charge` talks to a flaky payment gateway: it fails twice, then succeeds; Baton retries it
  with exponential back-off and jitter, durably.
- `ship` fails for an order whose address the carrier rejects until it is corrected: its
  retries run out, the run lands in the dead-letter queue, and after the fix it is redriven
  and resumes at the failed step (the card is not charged twice).

State stays in .baton/baton.db: try `baton runs ls`, `baton runs show RUN_ID`, `baton dlq ls`
and `baton events ls` afterwards.
"""

from __future__ import annotations

import time
from collections import Counter

from rich.console import Console
from rich.table import Table

import baton

app = baton.App()  # ./.baton/baton.db
baton.configure_logging("INFO", open(".baton/baton.log", "a"))  # JSON lines  # noqa: SIM115
console = Console(width=max(Console().width, 100))
gateway_calls: Counter[str] = Counter()
charges: Counter[str] = Counter()
rejected_addresses = {"12 Nowhere Lane"}


@app.step(name="validate")
def validate(order: dict) -> dict:
    if order["amount"] <= 0:
        raise baton.NonRetryableError(f"order {order['id']} has no amount")
    return {"id": order["id"], "amount": order["amount"], "address": order["address"]}


@app.step(name="reserve-stock")
def reserve_stock(order_id: str, items: int) -> str:
    return f"res-{order_id}-{items}"


@app.step(name="charge", retry=baton.Retry(max_attempts=5, initial=0.1, backoff=2, max_delay=2))
def charge(order_id: str, amount: int) -> str:
    gateway_calls[order_id] += 1
    if gateway_calls[order_id] < 3:
        raise ConnectionError(f"payment gateway timed out (call {gateway_calls[order_id]})")
    charges[order_id] += 1
    return f"rcpt-{order_id}"


@app.step(name="ship", retry=baton.Retry(max_attempts=3, initial=0.05, backoff=2))
def ship(order_id: str, address: str) -> str:
    if address in rejected_addresses:
        raise RuntimeError(f"carrier rejected address {address!r}")
    return f"trk-{order_id}"


@app.workflow(name="process-order", version="1")
def process_order(order: dict) -> dict:
    valid = validate(order)
    reservation = reserve_stock(valid["id"], order.get("items", 1))
    receipt = charge(valid["id"], valid["amount"])
    tracking = ship(valid["id"], valid["address"])
    return {"reservation": reservation, "receipt": receipt, "tracking": tracking}


def main() -> None:
    batch = time.strftime("%H%M%S")
    orders = [
        {"id": f"A-{batch}", "amount": 120, "items": 2, "address": "1 Main Street"},
        {"id": f"B-{batch}", "amount": 75, "items": 1, "address": "12 Nowhere Lane"},
        {"id": f"C-{batch}", "amount": 42, "items": 3, "address": "7 Harbour Road"},
    ]
    console.rule("[bold]Baton demo: order processing on SQLite")
    handles = {
        o["id"]: process_order.start(o, idempotency_key=f"order-{o['id']}", correlation_id=o["id"])
        for o in orders
    }
    console.print(f"started {len(handles)} runs in [cyan]{app.store.location}[/]")

    dead = None
    for order_id, handle in handles.items():
        try:
            result = handle.result(timeout=60)
            console.print(f"[green]✓[/] {order_id}: {result}")
        except baton.RunFailed as failure:
            dead = handle
            console.print(
                f"[red]✗[/] {order_id}: {failure.status} at step [bold]{failure.step}[/] "
                f"after {failure.attempts} attempts: {failure.message}"
            )

    if dead is not None:
        console.print(f"dead-letter queue: {[r.run_id for r in app.dead_letters()]}")
        console.print("fixing the address and redriving the run from its failed step…")
        rejected_addresses.clear()
        app.redrive(dead.id)
        console.print(f"[green]✓[/] redriven: {dead.result(timeout=60)}")

    table = Table(title="Runs")
    table.add_column("order")
    table.add_column("run id", no_wrap=True)
    for column in ("status", "calls", "charged", "retries"):
        table.add_column(column)
    for order_id, handle in handles.items():
        retries = len(app.events(run_id=handle.id, type="baton.step.retrying", limit=1000))
        table.add_row(
            order_id,
            handle.id,
            handle.status(),
            str(gateway_calls[order_id]),
            str(charges[order_id]),
            str(retries),
        )
    console.print(table)
    console.print("every order charged exactly once:", all(c == 1 for c in charges.values()))
    console.print("JSON logs (run_id, step, correlation_id on every line): .baton/baton.log")
    console.print(
        "inspect with: [bold].venv/bin/baton runs ls[/], "
        "[bold].venv/bin/baton runs show RUN_ID[/], [bold].venv/bin/baton events ls[/]"
    )
    console.print(
        "serve it (API, dashboard at http://127.0.0.1:8080/): "
        "[bold].venv/bin/baton serve --app examples.orders:app[/]"
    )
    app.shutdown()


if __name__ == "__main__":
    main()

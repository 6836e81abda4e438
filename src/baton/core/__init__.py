"""Pure building blocks shared by every layer: ids, clocks, errors, retry maths, events, JSON."""

"""Progress lines of the flow: one line per event, flushed at once (builds run for minutes)."""

from __future__ import annotations


def log(message: str) -> None:
    print(message, flush=True)

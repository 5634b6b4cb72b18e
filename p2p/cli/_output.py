"""One JSON object per line on stdout (``--json``), flushed so that other programs can follow."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, default=str) + "\n")
    sys.stdout.flush()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str, indent=None) + "\n")
    sys.stdout.flush()

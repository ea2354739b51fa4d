"""Run one benchmark client command in a fresh process.

``python -m tests.bench.client PEER COMMAND 'JSON-KWARGS'`` imports
``tests.bench.peer_PEER``, calls its ``cmd_COMMAND(**kwargs)`` and prints the
returned figures as one line ``BENCH-RESULT {json}``. A fresh process per
measurement keeps peers from sharing threads, connections, imports or garbage.
"""

from __future__ import annotations

import importlib
import json
import sys

MARKER = "BENCH-RESULT "


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    peer, command, raw = argv
    module = importlib.import_module(f"tests.bench.peer_{peer}")
    result = getattr(module, "cmd_" + command.replace("-", "_"))(**json.loads(raw))
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

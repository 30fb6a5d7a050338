"""How often `jghub mappings scaffold` suggests the field a shipped mapping really fills.

Run: ``.venv/bin/python bench/scaffold_suggestions.py [--misses]``. For every shipped inbound
mapping, the suggester reads its valid samples and ranks the dataset's fields for each leaf; a
source field counts once per mapping, and its suggestion is right when it names a field the
shipped mapping fills from that path (`mappings.scaffold.evaluate`); and the dataset guessed
from each message type's valid samples is compared with the one its mapping names. The
reference is the shipped mappings themselves; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import time

from mappings.scaffold import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--misses", action="store_true", help="List the fields not in the top 3.")
    args = parser.parse_args()
    started = time.perf_counter()
    result = evaluate()
    elapsed = time.perf_counter() - started
    if args.misses:
        for miss in result.misses:
            print(miss)
    print(
        f"{result.fields} mapped source fields: top-1 right {result.top1} "
        f"({result.share(1):.1%}), top-3 {result.top3} ({result.share(3):.1%}); dataset guessed "
        f"right for {result.datasets_guessed} of {result.message_types} message types; "
        f"{elapsed:.1f} s"
    )
    figures = {
        "fields": result.fields,
        "top1_share": round(result.share(1), 4),
        "top3_share": round(result.share(3), 4),
        "message_types": result.message_types,
        "datasets_guessed": result.datasets_guessed,
        "seconds": round(elapsed, 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

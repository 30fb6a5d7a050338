"""Operator accounts for tests of the operators' HTTP routes: a file of them, and their secrets.

Set JGHUB_OPERATORS_FILE to `write_operators(tmp_path)` and call the routes with `auth=OPERATOR`
(ops-li, role operator) or `auth=READER` (ops-wang, role reader).
"""

from __future__ import annotations

import functools
from pathlib import Path

from monitor.operators import hash_secret

OPERATOR = ("ops-li", "li-secret-for-tests")
READER = ("ops-wang", "wang-secret-for-tests")


@functools.cache
def _hashed(secret: str) -> str:
    # scrypt is slow on purpose; one hash per secret serves every test of the run.
    return hash_secret(secret)


def write_operators(folder: Path) -> Path:
    """An accounts file in `folder` with OPERATOR (role operator) and READER (role reader)."""
    path = folder / "operators.yaml"
    path.write_text(
        "operators:\n"
        f"  - {{name: {OPERATOR[0]}, role: operator, secret_hash: '{_hashed(OPERATOR[1])}'}}\n"
        f"  - {{name: {READER[0]}, role: reader, secret_hash: '{_hashed(READER[1])}'}}\n",
        encoding="utf-8",
    )
    return path

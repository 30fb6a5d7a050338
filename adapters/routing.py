"""The routing key of an envelope on the bus: "dataset.region.source"."""

from __future__ import annotations

from standard.envelope import Envelope

NO_REGION = "000000"
"""The region word of records that carry no region code (deletes carry only their key)."""


def routing_key(envelope: Envelope, system_id: str) -> str:
    """`f"{dataset}.{region_code or '000000'}.{system_id}"`, e.g. `penalty_case.330100.eco-env`.

    Route patterns in the systems configuration select on these three words. The region is the
    record's `region_code`, or for a record that names several (a joint task's `region_codes`)
    the first. A delete carries only the record's key, so it routes under region 000000: a
    target that selects by region should also bind `*.000000.*` to hear about deletes.
    """
    region = envelope.data.get("region_code")
    if region is None:
        several = envelope.data.get("region_codes")
        region = several[0] if isinstance(several, list) and several else None
    word = str(region) if isinstance(region, str | int) and str(region) else NO_REGION
    return f"{envelope.spec.name}.{word}.{system_id}"

"""What happens to a warning, a task, a case after it is delivered: the hub's own workflows.

The centre is a consumer and publisher of canonical events like any other: it reads its queue
through the same decode and settle steps as egress, and publishes what it derives through the
same inbound path, with confirms.
"""

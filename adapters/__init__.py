"""Protocol plug-ins: how bytes come into the hub and go out of it."""

"""How the hub is put together: settings, systems configuration, app, worker, CLI."""

__version__ = "0.1.0"

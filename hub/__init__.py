"""How the hub is put together: settings, the systems file's loader, app, worker, CLI."""

__version__ = "0.1.0"

"""The operators' web console: server-rendered pages over what the API and `jghub` read.

    mount_console(app, ConsoleSources(gate=..., broker=..., topology=..., observer=..., ...))

Its own room, after `centre` and before `hub`: its pages read the monitor (overview, dead
letters, journal) and the centre (ledger, scorecard), and the hub mounts it. Modules: `pages`
(the routes, thin), `csrf` (the token its forms carry), `templating` (Jinja2, escaped);
`templates/` and `static/` ship with the package.
"""

from console.pages import ConsoleSources, mount_console

__all__ = ["ConsoleSources", "mount_console"]

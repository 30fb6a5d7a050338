"""Sub-commands of the `jghub` command line, one module per room."""

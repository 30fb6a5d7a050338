"""The command line starts and tells its version."""

from typer.testing import CliRunner

from hub import __version__
from hub.cli import app


def test_version_is_printed() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"jghub {__version__}"

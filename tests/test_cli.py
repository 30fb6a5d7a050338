"""The command line starts and tells its version."""

from typer.testing import CliRunner

from hub import __version__
from hub.cli import app


def test_version_is_printed() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"jghub {__version__}"


def test_simulate_refuses_the_collaboration_centre_inside_the_hub() -> None:
    result = CliRunner().invoke(app, ["simulate", "collaboration"])
    assert result.exit_code == 2
    assert "runs inside the hub" in " ".join(result.output.split())

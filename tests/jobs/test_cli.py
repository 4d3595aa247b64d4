import subprocess
import sys

from jobs import cli


def test_help_lists_available_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: catneuron" in out
    for name in cli._available():
        assert name in out


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "catneuron" in result.stdout

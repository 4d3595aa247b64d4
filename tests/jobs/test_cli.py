import subprocess
import sys

import pytest

from jobs import cli

#: Every subcommand the README documents; a module that went missing drops out of the help.
DOCUMENTED = ("demo", "ingest", "train", "visualize", "gallery", "evaluate", "submit", "jobs",
              "plan")


def test_help_lists_every_documented_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: catneuron")
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == list(DOCUMENTED)


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_command_answers_help(name, capsys):
    assert cli.main([name, "--help"]) == 0  # returned, not an escaping SystemExit
    assert "usage:" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_no_command_prints_the_usage_to_stderr(capsys):
    """No command is a usage error: exit 2, the usage on stderr and nothing on stdout."""
    assert cli.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: catneuron")


def test_a_misspelt_command_names_the_closest(capsys):
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'train'?" in err and len(err.strip().splitlines()) == 1


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "catneuron" in result.stdout


@pytest.mark.parametrize("name", ["evaluate", "visualize"])
def test_a_missing_run_is_refused_before_torch_is_imported(name, tmp_path):
    """A mistyped --run costs a fraction of a second: the refusal comes before the imports of
    the scoring (torch alone takes seconds to import)."""
    code = ("import sys; from jobs.cli import main; "
            f"rc = main([{name!r}, '--run', {str(tmp_path / 'nope')!r}]); "
            "print(rc, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.stdout.split() == ["2", "False"], result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "nope" in result.stderr, result.stderr

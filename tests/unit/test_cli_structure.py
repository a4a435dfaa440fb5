"""The CLI's structure: one module per command, no import cycle, and only the command run is loaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bhoga.cli import main as cli_main


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("argv", "modules"),
    [
        (["status"], ["bhoga.cli.status"]),
        (["--socket", "/tmp/x.sock", "--timeout", "3", "best", "m"], ["bhoga.cli.best"]),
        (["rank", "m", "--json"], ["bhoga.cli.best"]),
        (["set-quota", "p", "5"], ["bhoga.cli.set_quota"]),
        (["doctor"], ["bhoga.cli.doctor"]),
        (["service", "status", "--json"], ["bhoga.cli.service"]),
    ],
)
def test_only_the_command_being_run_is_loaded(argv: list[str], modules: list[str]) -> None:
    assert cli_main.modules_for(argv) == modules


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"], ["--version"], ["no-such-command"]])
def test_help_and_unknown_commands_load_every_command(argv: list[str]) -> None:
    everything = cli_main.modules_for(argv)
    assert set(cli_main.COMMANDS.values()) | set(cli_main.EXTENSIONS) == set(everything)


def test_every_command_module_registers_the_command_it_is_found_by() -> None:
    names: dict[str, list[str]] = {}
    for module in set(cli_main.COMMANDS.values()) | set(cli_main.EXTENSIONS):
        registered: list[str] = []

        def add(name: str, func: object, help: str, registered: list[str] = registered) -> object:
            import argparse

            registered.append(name)
            return argparse.ArgumentParser(prog=name)

        __import__(module, fromlist=["register"]).register(add)
        names[module] = registered
    for command, module in cli_main.COMMANDS.items():
        assert command in names[module]
    for module in cli_main.EXTENSIONS:
        assert module.rpartition(".")[2].replace("_", "-") in names[module]


def test_a_status_run_loads_no_other_command_and_no_event_loop() -> None:
    loaded = _fresh(
        "import sys\n"
        "from bhoga.cli import main\n"
        "main.build_parser(['status']).parse_args(['status'])\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('bhoga.cli.') or m in "
        "('asyncio', 'logging', 'bhoga.hermes', 'bhoga.quota.headers', 'json', 'shutil'))))"
    )
    assert loaded.split() == ["bhoga.cli.common", "bhoga.cli.main", "bhoga.cli.render", "bhoga.cli.status"]


@pytest.mark.parametrize("module", sorted(set(cli_main.COMMANDS.values()) | set(cli_main.EXTENSIONS)))
def test_each_command_module_imports_on_its_own_without_main(module: str) -> None:
    """No cycle through ``bhoga.cli.main``: a command module never needs it."""
    assert _fresh(f"import sys, {module}; print('bhoga.cli.main' in sys.modules)") == "False"


def test_import_bhoga_loads_only_what_router_needs() -> None:
    extra = _fresh(
        "import sys\n"
        "import msgspec\n"
        "before = set(sys.modules)\n"
        "import bhoga\n"
        "print(' '.join(sorted(set(sys.modules) - before)))"
    ).split()
    unwanted = {"logging", "tempfile", "typing_extensions", "pathlib", "platformdirs", "subprocess"}
    assert not (unwanted | {"asyncio"}) & set(extra), extra
    assert not [m for m in extra if m.startswith(("bhoga.quota", "bhoga.cli.", "bhoga.hermes", "bhoga.aio"))]
    assert "bhoga.client" in extra

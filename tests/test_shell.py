"""The terminal adapter as a newcomer uses it: piped input to `chatops shell`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHATOPS = Path(sys.executable).parent / "chatops"


def run_shell(stdin: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_"))}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'shell.db'}"
    return subprocess.run(
        [str(CHATOPS), "--config", str(ROOT / "chatops.example.yaml"), "shell", *args],
        input=stdin, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
        check=False)


def test_piped_help_prints_the_command_list_and_exits_0(tmp_path: Path) -> None:
    run = run_shell("/help\n", tmp_path)
    assert run.returncode == 0, run.stderr
    assert "*/help* — List the commands" in run.stdout
    assert "`/help [<command>]`" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_mistakes_get_clear_answers(tmp_path: Path) -> None:
    run = run_shell("hello\n/nope\n/help too many words\n/press nothing\n# a comment\n\n",
                    tmp_path)
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    assert out[0] == "Commands start with a slash — try /help."
    assert out[1] == "I don't know the command /nope. Try /help."
    assert out[2] == "I didn't expect 'many' there."
    assert "That button is no longer handled by this bot." in out


def test_identity_can_be_switched(tmp_path: Path) -> None:
    run = run_shell(":as UBOB\n:channel deploys\n:quit\n/help\n", tmp_path, "--as", "UALICE")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["(now acting as UBOB)", "(now in #deploys)"]


def test_without_any_config_the_shell_uses_the_example(tmp_path: Path) -> None:
    (tmp_path / "chatops.example.yaml").write_text((ROOT / "chatops.example.yaml").read_text())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "DATABASE_", "CHATOPS_"))}
    run = subprocess.run([str(CHATOPS), "shell"], input="/help\n", capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "using chatops.example.yaml" in run.stderr
    assert "*/help* — List the commands" in run.stdout

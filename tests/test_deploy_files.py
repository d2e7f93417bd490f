"""The deployment files stay in step with the code: the ConfigMap's
configuration validates, and the Slack app manifest declares every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from bot.app import BotApp
from bot.core.config import Config
from bot.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_configmap_configuration_checks(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "deploy/kubernetes/configmap.yaml").read_text())
    config = tmp_path / "chatops.yaml"
    config.write_text(doc["data"]["chatops.yaml"])
    env = {"SLACK_DEPLOYS_CHANNEL": "C1", "SLACK_INCIDENTS_CHANNEL": "C2", "PATH": ""}
    run = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check-config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr


def test_manifest_declares_every_slash_command(config: Config) -> None:
    manifest = yaml.safe_load((ROOT / "deploy/slack-app-manifest.yaml").read_text())
    declared = {c["command"] for c in manifest["features"]["slash_commands"]}
    bot = BotApp(Settings(), config)
    assert set(bot.registry.commands) <= declared

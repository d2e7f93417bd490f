"""`chatops shell` with no KUBECONFIG brings up the sandbox cluster; a canary
deploy typed at the prompt completes and kubectl sees the new image."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHATOPS = Path(sys.executable).parent / "chatops"


async def read_until(stream: asyncio.StreamReader, needle: str, timeout: float) -> str:
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"output ended before {needle!r}:\n" + "".join(seen))
            seen.append(line)
            if needle in line:
                return "".join(seen)


async def test_canary_deploy_from_the_terminal_on_the_sandbox(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "DATABASE_", "KUBECONFIG", "PROMETHEUS_", "GITHUB_"))}
    env.update(CHATOPS_SANDBOX_FAST="1", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/s.db")
    proc = await asyncio.create_subprocess_exec(
        str(CHATOPS), "--config", str(ROOT / "tests" / "data" / "config.yaml"), "shell",
        "--as", "UALICE", cwd=tmp_path, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        banner = await read_until(proc.stderr, "started a sandbox cluster", 30)
        assert "no KUBECONFIG" in banner
        proc.stdin.write(b"/deploy checkout v2 to staging strategy=canary\n")
        await proc.stdin.drain()
        out = await read_until(proc.stdout, "Deploy #1 Completed", 60)
        assert "step 1/2: canary at 25%" in out and "step 2/2: canary at 50%" in out
        assert "Analysis passed at canary step 1 (25%)" in out
        kubectl = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", str(tmp_path / ".sandbox" / "kubeconfig"),
            "-n", "shop-staging", "get", "deploy", "checkout", "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
            stdout=asyncio.subprocess.PIPE)
        image, _ = await kubectl.communicate()
        assert image.decode() == "registry.example.com/shop/checkout:v2"
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

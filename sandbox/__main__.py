"""``python -m sandbox --config FILE --port N --kubeconfig OUT``: run it standalone."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from sandbox.config import SandboxConfig
from sandbox.server import start_sandbox

EXAMPLE_CONFIG = Path(__file__).with_name("example-config.yaml")


async def _serve(args: argparse.Namespace) -> None:
    # Handlers first: whoever reads our "listening" lines may interrupt at once.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    config = SandboxConfig.from_file(args.config)
    sandbox = await start_sandbox(config, host=args.host, port=args.port,
                                  prometheus_port=args.prometheus_port)
    print(f"sandbox Kubernetes API: {sandbox.url} (bearer token: {sandbox.token})", flush=True)
    print(f"sandbox Prometheus API: {sandbox.prometheus_url}", flush=True)
    if args.kubeconfig:
        path = sandbox.write_kubeconfig(args.kubeconfig, namespace=args.namespace)
        print(f"kubeconfig written to {path} (try: kubectl --kubeconfig {path} get deploy)",
              flush=True)
    try:
        await stop.wait()
    finally:
        await sandbox.stop()
        print("sandbox stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--config", default=str(EXAMPLE_CONFIG),
                        help="YAML or JSON sandbox config (default: the bundled example)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6443,
                        help="Kubernetes API (HTTPS) port; 0 picks a free port")
    parser.add_argument("--prometheus-port", type=int, default=9090,
                        help="Prometheus API (plain HTTP) port; 0 picks a free port")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for this sandbox here")
    parser.add_argument("--namespace", default="default",
                        help="the kubeconfig context's namespace")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()

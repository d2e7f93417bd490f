"""A local stand-in for a Kubernetes cluster and its Prometheus.

One aiohttp server speaks enough of the Kubernetes REST API for kubectl and the
official Python client (discovery, Deployments, ReplicaSets, Pods, Services,
Namespaces, watch, patch, scale) and simulates rollouts over time; the same
server answers Prometheus queries under ``/prometheus`` with series
synthesised from the simulated pods.
"""

from sandbox.config import Behaviour, DeploymentConfig, ImageRule, SandboxConfig, ServiceConfig
from sandbox.server import RecordedRequest, RequestLog, RunningSandbox, start_sandbox

__all__ = [
    "Behaviour",
    "DeploymentConfig",
    "ImageRule",
    "RecordedRequest",
    "RequestLog",
    "RunningSandbox",
    "SandboxConfig",
    "ServiceConfig",
    "start_sandbox",
]

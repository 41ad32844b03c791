"""The optional built-in data plane: sticky A/B assignment, shadow comparison and outcome feedback."""

from mlrollouts.gateway.app import create_app
from mlrollouts.gateway.config import GatewayConfig, GatewayConfigError
from mlrollouts.gateway.server import run_gateway, serve_gateway_in_thread, serve_in_thread

__all__ = [
    "GatewayConfig",
    "GatewayConfigError",
    "create_app",
    "run_gateway",
    "serve_gateway_in_thread",
    "serve_in_thread",
]

"""Loading the API client's configuration for `kubernetes.aio` (routing/kube.py): a kubeconfig, as kubectl
reads it, or the pod's service account; split from kube.py so each reads in one sitting."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from typing import Any

import kubernetes.aio.client
import kubernetes.aio.config

TOKEN_CHECK_SECONDS = 60.0


def aio_configuration(path: str | None = None, context: str | None = None) -> kubernetes.aio.client.Configuration:
    """The kubeconfig at `path` (default $KUBECONFIG / ~/.kube/config, as kubectl) loaded for `kubernetes.aio`.

    Client certificates, tokens and CA data as the sync client loads them; an exec plugin's token (or an OIDC /
    GCP one) is fetched again when it expires, checked before each request (the async loader sets no refresh
    hook of its own). Loading is async (an exec plugin runs as an asyncio subprocess), so it runs on a loop of
    its own: callable before kopf starts its loop, or from inside a running one.
    """
    configuration = kubernetes.aio.client.Configuration()
    path = path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None

    async def load() -> Any:
        return await kubernetes.aio.config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration, persist_config=False
        )

    loader = _run_sync(load())
    if getattr(loader, "exec_plugin_expiry", None) is not None or loader.provider in ("gcp", "oidc"):
        checked = time.monotonic()

        async def refresh(target: kubernetes.aio.client.Configuration) -> None:
            nonlocal checked
            if time.monotonic() - checked >= TOKEN_CHECK_SECONDS:  # well inside the loader's 5-minute expiry skew
                checked = time.monotonic()
                await loader.load_and_set(target)  # the plugin runs again only if its token expired

        configuration.refresh_api_key_hook = refresh
    return configuration


def incluster_configuration() -> kubernetes.aio.client.Configuration:
    """The pod's service account; its token file is re-read every minute (projected tokens rotate)."""
    configuration = kubernetes.aio.client.Configuration()
    kubernetes.aio.config.load_incluster_config(client_configuration=configuration)
    return configuration


def _run_sync(coroutine: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # once, at start-up: not on any hot path
        return pool.submit(asyncio.run, coroutine).result()

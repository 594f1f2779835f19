"""Readiness probes of the local pods, as a kubelet runs a readinessProbe: Redis PING, or HTTP GET /healthz.

One probe object per pod process holds one connection and reuses it (redis-py's single-connection client, httpx's
keep-alive pool of one). `check()` answers None when the pod is ready, else the reason in kubelet's words
("PING timed out", "GET /healthz answered 503"). The pod decides what a failure means (`pods.LocalPod`): after
`failureThreshold` failures in a row it is not ready, and it is ready again on the next success.
"""

from __future__ import annotations

import contextlib

import httpx
import redis.asyncio as aredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

LOOPBACK = "127.0.0.1"


class RedisPing:
    """PING on one reused connection; a timeout or an error reply (-LOADING while a follower loads) fails."""

    def __init__(self, port: int, timeout: float) -> None:
        self._client = aredis.Redis(
            host=LOOPBACK,
            port=port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            single_connection_client=True,
            retry=Retry(NoBackoff(), 0),
        )

    async def check(self) -> str | None:
        try:
            answer = await self._client.ping()
        except redis.exceptions.TimeoutError:
            return "PING timed out"
        except redis.exceptions.ResponseError as exc:
            return f"PING answered {str(exc).split(' ', 1)[0]}"
        except (redis.exceptions.RedisError, OSError) as exc:
            return f"PING failed: {_reason(exc)}"
        return None if answer else "PING did not answer PONG"

    async def close(self) -> None:
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            await self._client.aclose()


class HttpGet:
    """GET /healthz on one kept-alive connection; anything but 200 within the timeout fails."""

    def __init__(self, port: int, timeout: float) -> None:
        self._url = f"http://{LOOPBACK}:{port}/healthz"
        self._client = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            trust_env=False,
        )

    async def check(self) -> str | None:
        try:
            response = await self._client.get(self._url)
        except httpx.TimeoutException:
            return "GET /healthz timed out"
        except httpx.HTTPError as exc:
            return f"GET /healthz failed: {_reason(exc)}"
        return None if response.status_code == 200 else f"GET /healthz answered {response.status_code}"

    async def close(self) -> None:
        with contextlib.suppress(httpx.HTTPError, OSError):
            await self._client.aclose()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if "refused" in text.lower():
        return "connection refused"
    return text[:120] or type(exc).__name__

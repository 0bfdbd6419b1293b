"""The broker ping behind the health report's ``queue.<broker>`` check."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import redis

from cloudbackup.domain.health import BrokerPing, broker_system
from cloudbackup.settings import Settings


def broker_ping(settings: Settings) -> BrokerPing:
    """Redis answers PING; other brokers (AMQP): their port accepts connections. Each attempt
    is bounded by ``CLOUDBACKUP_HEALTH_TIMEOUT_SECONDS``."""

    def ping() -> bool:
        url = settings.broker_url
        timeout = settings.health_timeout_seconds
        if broker_system(url) == "redis":
            client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname or "localhost", parts.port or 5672), timeout):
            return True

    return ping

"""The paho client as the device configures it, and connection errors in an installer's words.

Kept apart from device/mqtt.py (the delivery rule and its callbacks) so that what a
connection needs (credentials, TLS, the last will, reconnect pacing) is read in one place.
"""

from __future__ import annotations

import logging
import socket
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from device.config import ConfigError, MqttConfig, resolve_password


class Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed (for the log)."""

    last_error: Exception | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as e:
            self.last_error = e
            raise


def make_client(cfg: MqttConfig, client_id: str, availability_topic: str,
                max_inflight: int) -> Client:
    """A client with the device's session, last will, credentials and TLS; no callbacks yet.

    Raises ConfigError when the password or TLS files cannot be read.
    """
    c = Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
               protocol=mqtt.MQTTv311)
    c.enable_logger(logging.getLogger("device.mqtt.paho"))
    # A bug in one of our callbacks must not kill paho's network thread.
    c.suppress_exceptions = True
    c.will_set(availability_topic, "offline", qos=1, retain=True)
    c.reconnect_delay_set(cfg.reconnect_min_s,  # type: ignore[arg-type]
                          cfg.reconnect_max_s)  # type: ignore[arg-type]
    c.max_inflight_messages_set(max_inflight)
    if cfg.username:
        password = resolve_password(cfg)
        c.username_pw_set(cfg.username,
                          password.get_secret_value() if password is not None else None)
    tls = cfg.tls
    if tls.enabled:
        try:
            c.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (OSError, ValueError) as e:
            raise ConfigError([f"mqtt.tls: cannot load the TLS files: {e}"]) from None
        c.tls_insecure_set(tls.insecure)
    return c


def describe_connect_error(err: Exception | None) -> str:
    """Why a connection attempt failed, worded for an installer, with the setting to check."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return (f"TLS certificate check failed ({err.verify_message}); check mqtt.tls.ca_file "
                "(and mqtt.tls.insecure if only the host name differs)")
    if isinstance(err, ssl.SSLError):
        return (f"TLS handshake failed ({err.reason or err}); check mqtt.tls and that "
                "mqtt.port is the broker's TLS port")
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (is the broker running and listening on mqtt.port?)"
    if isinstance(err, socket.gaierror):
        return f"cannot resolve mqtt.host ({err.strerror})"
    if isinstance(err, TimeoutError | socket.timeout):
        return "connection timed out (check mqtt.host, mqtt.port and the firewall)"
    if err is None:
        return "connection failed"
    return f"connection failed ({err})"


__all__ = ["Client", "describe_connect_error", "make_client"]

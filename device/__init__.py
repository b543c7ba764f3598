"""moodcam on-device daemon: camera -> faces -> int8 mood -> aggregated MQTT."""

__version__ = "0.1.0"

"""`moodcam-collect`: MQTT mood/status/availability topics into SQLite or PostgreSQL, each
window stored exactly once (persistent QoS 1 session, acknowledged only after commit)."""

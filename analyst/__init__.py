"""moodcam's analyst side: collect mood windows from MQTT into a database, report on them.

Installed with the `analyst` extra (`pip install 'moodcam[analyst]'`); the Pi never installs it.
It shares only the payload contract with the device: device.payloads and device/schemas.
"""

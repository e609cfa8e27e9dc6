"""atfab: provision and manufacture Espressif modules running ESP-AT firmware."""

__version__ = "0.1.0"

"""The API's settings: :class:`mindprint.platform.settings.Settings` (kept importable here)."""

from __future__ import annotations

from mindprint.platform.settings import Settings, get_settings

ApiSettings = Settings

__all__ = ["ApiSettings", "Settings", "get_settings"]

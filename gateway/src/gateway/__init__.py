"""mcloud HTTP gateway: Segment-compatible tracking, profiles, tenants and API keys."""

__version__ = "0.1.0"

"""Canonical, vendor-neutral model of quote-to-cash (see docs/domain.md)."""

"""Canonical, vendor-neutral model of quote-to-cash (see shared/DOMAIN.md)."""

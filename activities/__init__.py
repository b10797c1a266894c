"""Thin activities: each one calls a connector and returns canonical models."""

"""Sandbox-only admin endpoints: fault injection, token revocation, reset to seed."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from sandboxes.common.faults import ADMIN_PREFIX, FaultConfig, FaultState


def admin_router(
    faults: FaultState, *, reset: Callable[[], None], revoke_tokens: Callable[[], int] | None = None
) -> APIRouter:
    router = APIRouter(prefix=ADMIN_PREFIX, tags=["sandbox-admin"])

    @router.get("/faults")
    def get_faults() -> dict:
        return {"config": faults.config.model_dump(), "counters": faults.counters()}

    @router.put("/faults")
    def put_faults(config: FaultConfig) -> dict:
        faults.config = config
        faults.reset_counters()
        return {"config": faults.config.model_dump(), "counters": faults.counters()}

    @router.post("/reset")
    def reset_all() -> dict:
        faults.config = FaultConfig()
        faults.reset_counters()
        reset()
        return {"reset": True}

    if revoke_tokens is not None:

        @router.post("/tokens/revoke")
        def revoke() -> dict:
            return {"revoked": revoke_tokens()}

    @router.get("/health")
    def health() -> dict:
        return {"ok": True}

    return router

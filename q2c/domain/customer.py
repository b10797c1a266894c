"""Customer: the legal customer as the ERP will hold it, sourced from the CRM account."""

from __future__ import annotations

from pydantic import BaseModel


class Address(BaseModel):
    street: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2


class Customer(BaseModel):
    crm_account_id: str
    name: str
    legal_name: str | None = None
    region: str | None = None
    subsidiary_id: str | None = None  # ERP legal entity, resolved from the region
    tax_id: str | None = None
    billing_address: Address = Address()
    currency: str | None = None
    payment_terms: str | None = None  # e.g. "Net 30"
    erp_customer_id: str | None = None

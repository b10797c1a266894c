"""Metadata resources of the REST API, built from the sandbox's own schema (`schema.py`), so
what describe reports is exactly what validation enforces.

Shapes follow the REST API Developer Guide: Versions (`GET /services/data/` -> a list of
`{label, url, version}`), Resources by Version, Describe Global (`{encoding, maxBatchSize,
sobjects}`), sObject Basic Information (`{objectDescribe, recentItems}`), sObject Describe
(object properties, `fields`, `childRelationships`, `urls`) and Limits (`{Name: {Max,
Remaining}}`). Only the properties a client reads are filled in; each field describe carries
name, type, label, length, precision/scale, custom, externalId, nillable, createable,
updateable, referenceTo and `picklistValues` (`{active, defaultValue, label, validFor, value}`).
"""

from __future__ import annotations

import math
import re
from typing import Any

from sandboxes.crm import ids
from sandboxes.crm.schema import SCHEMAS, FieldDef

OLDEST_VERSION = 31  # 21.0-30.0 were retired in Summer '25 (v64.0)
LATEST_VERSION = 64
_SEASONS = ("Winter", "Spring", "Summer")

SOBJECT_LABELS: dict[str, tuple[str, str]] = {
    "Account": ("Account", "Accounts"),
    "Opportunity": ("Opportunity", "Opportunities"),
    "OpportunityLineItem": ("Opportunity Product", "Opportunity Products"),
}

# Salesforce's SOAP types per field type
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "textarea": "xsd:string",
    "picklist": "xsd:string",
    "currency": "xsd:double",
    "double": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "boolean": "xsd:boolean",
}

# Salesforce counts most records as 2 KB of data storage
RECORD_STORAGE_KB = 2
DATA_STORAGE_MB = 1024


def release_label(version: int) -> str:
    """v20.0 was Winter '11; three releases a year since (v60.0 = Spring '24)."""
    offset = version - 20
    return f"{_SEASONS[offset % 3]} '{11 + offset // 3:02d}"


def versions() -> list[dict[str, str]]:
    return [
        {"label": release_label(n), "url": f"/services/data/v{n}.0", "version": f"{n}.0"}
        for n in range(OLDEST_VERSION, LATEST_VERSION + 1)
    ]


_VERSION = re.compile(r"^v(\d{2})\.0$")


def resolve_version(segment: str) -> str | None:
    """`vNN.0` of an available version (or the `latest` alias) -> `vNN.0`; None otherwise."""
    if segment == "latest":
        return f"v{LATEST_VERSION}.0"
    m = _VERSION.match(segment)
    if m and OLDEST_VERSION <= int(m.group(1)) <= LATEST_VERSION:
        return segment
    return None


def resources(version: str) -> dict[str, str]:
    base = f"/services/data/{version}"
    return {name: f"{base}/{name}" for name in ("limits", "query", "queryAll", "sobjects")}


def label_of(name: str) -> str:
    """The label an admin would give a field by default: `Legal_Name__c` -> "Legal Name"."""
    base = name.removesuffix("__c").replace("_", " ")
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base)


def _urls(sobject: str, version: str) -> dict[str, str]:
    base = f"/services/data/{version}/sobjects/{sobject}"
    return {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}


def sobject_entry(sobject: str, version: str) -> dict[str, Any]:
    """One object of Describe Global (also `objectDescribe` of sObject Basic Information)."""
    label, plural = SOBJECT_LABELS[sobject]
    return {
        "activateable": False,
        "createable": True,
        "custom": sobject.endswith("__c"),
        "customSetting": False,
        "deletable": True,
        "deprecatedAndHidden": False,
        "feedEnabled": False,
        "hasSubtypes": False,
        "isSubtype": False,
        "keyPrefix": ids.KEY_PREFIXES[sobject],
        "label": label,
        "labelPlural": plural,
        "layoutable": True,
        "mergeable": sobject == "Account",
        "mruEnabled": True,
        "name": sobject,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": True,
        "triggerable": True,
        "undeletable": True,
        "updateable": True,
        "urls": _urls(sobject, version),
    }


def global_describe(version: str) -> dict[str, Any]:
    return {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [sobject_entry(t, version) for t in SCHEMAS]}


def field_describe(name: str, f: FieldDef) -> dict[str, Any]:
    numeric = f.type in ("currency", "double")
    text_like = f.type in ("id", "reference", "string", "textarea", "picklist")
    length = (f.length or 255) if text_like else 0
    return {
        "aggregatable": f.type != "textarea",
        "autoNumber": False,
        "byteLength": length * 3,
        "calculated": f.calculated,
        "calculatedFormula": None,
        "cascadeDelete": False,
        "caseSensitive": False,
        "createable": f.createable,
        "custom": name.endswith("__c"),
        "defaultValue": None,
        "defaultedOnCreate": name in ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp"),
        "dependentPicklist": False,
        "digits": 0,
        "externalId": f.external_id and name != "Id",
        "filterable": f.type != "textarea",
        "groupable": f.type not in ("textarea", "currency", "double", "datetime"),
        "idLookup": name == "Id" or f.external_id,
        "label": f.label or label_of(name),
        "length": length,
        "name": name,
        "nameField": name == "Name",
        "nillable": not f.required and f.createable and f.type != "boolean",
        "picklistValues": [
            {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v} for v in f.picklist_values
        ],
        "precision": (f.precision or 18) if numeric else 0,
        "referenceTo": [f.reference_to] if f.reference_to else [],
        "relationshipName": f.relationship,
        "restrictedPicklist": f.restricted is not None,
        "scale": (f.scale or 0) if numeric else 0,
        "soapType": _SOAP_TYPES[f.type],
        "sortable": f.type != "textarea",
        "type": f.type,
        "unique": False,
        "updateable": f.updateable,
    }


def child_relationships(sobject: str) -> list[dict[str, Any]]:
    out = []
    for child, fields in SCHEMAS.items():
        for name, f in fields.items():
            if f.reference_to == sobject:
                out.append(
                    {
                        "cascadeDelete": True,
                        "childSObject": child,
                        "deprecatedAndHidden": False,
                        "field": name,
                        "relationshipName": SOBJECT_LABELS[child][1].replace(" ", ""),
                        "restrictedDelete": False,
                    }
                )
    return out


def describe_sobject(sobject: str, version: str) -> dict[str, Any]:
    return {
        **sobject_entry(sobject, version),
        "childRelationships": child_relationships(sobject),
        "fields": [field_describe(name, f) for name, f in SCHEMAS[sobject].items()],
        "recordTypeInfos": [],
    }


def limits(*, api_max: int, api_used: int, records: int) -> dict[str, dict[str, int]]:
    """The org's limits; DailyApiRequests is the sandbox's own counter (the one behind
    `Sforce-Limit-Info`), data storage follows the record count, the rest are an edition's
    allocations, untouched."""
    used_mb = math.ceil(records * RECORD_STORAGE_KB / 1024)
    return {
        "DailyApiRequests": {"Max": api_max, "Remaining": max(0, api_max - api_used)},
        "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
        "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
        "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
        "DailyWorkflowEmails": {"Max": 2000, "Remaining": 2000},
        "DataStorageMB": {"Max": DATA_STORAGE_MB, "Remaining": max(0, DATA_STORAGE_MB - used_mb)},
        "FileStorageMB": {"Max": DATA_STORAGE_MB, "Remaining": DATA_STORAGE_MB},
        "HourlyTimeBasedWorkflow": {"Max": 1000, "Remaining": 1000},
        "MassEmail": {"Max": 5000, "Remaining": 5000},
        "SingleEmail": {"Max": 5000, "Remaining": 5000},
    }

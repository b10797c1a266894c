"""Tiny HTML building blocks for the console: every dynamic value goes through `esc()`.

No template engine: pages are plain f-strings assembled from these helpers. The rule that
keeps them safe is simple: text and attribute values are escaped with `html.escape(...,
quote=True)` where they are inserted; helpers take raw values and return markup.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2933;background:#f5f7fa;font-size:15px}
header{background:#1f3a5f;color:#fff;padding:10px 24px;display:flex;align-items:center;gap:24px}
header a{color:#fff;text-decoration:none;font-weight:600}
header .who{margin-left:auto;font-size:13px;opacity:.9}
header form{display:inline;margin:0}
header button{background:transparent;border:1px solid #fff6;color:#fff;padding:2px 8px;border-radius:4px;cursor:pointer}
main{max-width:1100px;margin:0 auto;padding:18px 24px 60px}
h1{font-size:22px;margin:8px 0 4px} h2{font-size:17px;margin:0 0 10px}
section.card{background:#fff;border:1px solid #d9e2ec;border-radius:8px;padding:16px 18px;margin:16px 0}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e4e7eb;vertical-align:top}
th{font-size:12px;text-transform:uppercase;color:#52606d;letter-spacing:.03em}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-size:12px;font-weight:600;background:#e4e7eb}
.stage-AwaitingSteward{background:#fde68a;color:#7c2d12} .stage-Active,.stage-Collecting{background:#c6f6d5;color:#22543d}
.stage-Cancelled,.stage-Closed{background:#e2e8f0;color:#2d3748} .stage-Provisioning,.stage-Validating,.stage-Received{background:#bee3f8;color:#2a4365}
.flash{padding:10px 14px;border-radius:6px;margin:12px 0} .flash.ok{background:#e3f9e5;border:1px solid #7bc47f}
.flash.err{background:#fde8e8;border:1px solid #f29b9b}
.field{display:grid;grid-template-columns:190px 260px 1fr;gap:8px;align-items:center;margin:6px 0}
.field label{font-weight:500} .field.at-fault label::after{content:" \\2022 missing";color:#c53030;font-size:12px}
input[type=text],input[type=password],select{padding:6px 8px;border:1px solid #bcccdc;border-radius:4px;width:100%;font-size:14px}
input.invalid{border-color:#e53e3e;background:#fff5f5}
.error{color:#c53030;font-size:13px}
button.primary{background:#2f6fdf;color:#fff;border:0;border-radius:5px;padding:7px 16px;font-size:14px;cursor:pointer}
button.secondary{background:#fff;color:#1f3a5f;border:1px solid #9fb3c8;border-radius:5px;padding:6px 14px;cursor:pointer}
button.danger{background:#c53030;color:#fff;border:0;border-radius:5px;padding:7px 16px;cursor:pointer}
.muted{color:#7b8794;font-size:13px} .row{display:flex;gap:12px;align-items:flex-end;flex-wrap:wrap}
.filters label{display:block;font-size:12px;color:#52606d} .filters input,.filters select{width:auto}
.grid4{display:grid;grid-template-columns:repeat(4,1fr);gap:8px;margin:4px 0}
code{background:#f0f4f8;padding:1px 4px;border-radius:3px}
"""


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def url(path: str, **params: object) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return path + ("?" + query if query else "")


def badge(stage: str) -> str:
    return f'<span class="badge stage-{esc(stage)}" data-stage="{esc(stage)}">{esc(stage)}</span>'


def table(headers: list[str], rows: list[list[str]], *, empty: str = "nothing here", attrs: str = "") -> str:
    """`rows` cells are markup (escape text with esc() before passing it)."""
    if not rows:
        return f'<p class="muted">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'


def text_input(
    name: str,
    value: str = "",
    *,
    errors: list[str] | None = None,
    placeholder: str = "",
    type_: str = "text",
    attrs: str = "",
    key: str | None = None,
) -> str:
    """`key` names the input's element ids (`f-<key>`, `err-<key>`) when several forms on a page
    share a field name (e.g. each milestone's waive reason); default: the name."""
    key = key or name
    cls = ' class="invalid"' if errors else ""
    aria = f' aria-invalid="true" aria-describedby="err-{esc(key)}"' if errors else ""
    return (
        f'<input type="{type_}" id="f-{esc(key)}" name="{esc(name)}" value="{esc(value)}"'
        f' placeholder="{esc(placeholder)}"{cls}{aria} {attrs}>'
    )


def error_text(name: str, errors: list[str] | None) -> str:
    if not errors:
        return ""
    return f'<span class="error" id="err-{esc(name)}" data-field="{esc(name)}">{esc("; ".join(errors))}</span>'


def flash(message: str | None, *, ok: bool = True) -> str:
    if not message:
        return ""
    return f'<div class="flash {"ok" if ok else "err"}" role="status" id="flash">{esc(message)}</div>'


def page(title: str, body: str, *, user: str | None = None, role: str | None = None, csrf: str | None = None) -> str:
    who = ""
    if user:
        who = (
            f'<span class="who">{esc(user)} ({esc(role)}) '
            f'<form method="post" action="/console/logout">{hidden("csrf_token", csrf or "")}'
            f'<button type="submit">log out</button></form></span>'
        )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · q2c steward console</title><style>{CSS}</style></head>"
        f'<body><header><a href="/console">q2c · steward console</a>'
        f'<a href="/console" style="font-weight:400">Queue</a>{who}</header>'
        f"<main>{body}</main></body></html>"
    )

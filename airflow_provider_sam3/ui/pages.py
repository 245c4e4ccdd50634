"""The tab's HTML, rendered on the server (no script, no build): every value a task stored is escaped here."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from airflow_provider_sam3.ui.records import TaskKey

__all__ = [
    "PAGE_SIZE",
    "Urls",
    "batch_page",
    "not_found_page",
    "other_page",
    "running_batch_page",
    "single_page",
    "waiting_page",
]

PAGE_SIZE = 48
"""Thumbnails per gallery page."""

_STYLE = """
body{font:14px system-ui,sans-serif;margin:16px;color:#1f2328;background:#fff}
h1{font-size:18px;margin:0 0 12px}h2{font-size:15px;margin:20px 0 8px}
table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
#sam3-counts{display:flex;gap:16px;flex-wrap:wrap;margin:0 0 12px;padding:0}
#sam3-counts li{list-style:none;border:1px solid #d0d7de;border-radius:6px;padding:6px 12px}
#sam3-counts b{display:block;font-size:20px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.cell{width:220px;font-size:12px;word-break:break-all}
.cell img{width:220px;height:auto;border:1px solid #d0d7de;background:#eee}
.failed{color:#cf222e}.muted{color:#656d76}nav a{margin-right:10px}
.sam3-overlay{max-width:100%;border:1px solid #d0d7de}
"""


class Urls:
    """The links of one task instance's pages, under the path the app is mounted at (base-URL aware)."""

    def __init__(self, mount: str, key: TaskKey) -> None:
        parts = (key.dag_id, key.run_id, key.task_id, str(key.map_index))
        self.base = mount.rstrip("/") + "/ti/" + "/".join(quote(p, safe="") for p in parts)

    def page(self, status: str | None = None, number: int = 1) -> str:
        query = {k: v for k, v in (("status", status), ("page", number if number > 1 else None)) if v}
        return self.base + (f"?{urlencode(query)}" if query else "")

    def overlay(self) -> str:
        return f"{self.base}/overlay.png"

    def thumb(self, position: int, index: int) -> str:
        return f"{self.base}/thumb.png?{urlencode({'at': position, 'index': index})}"

    def file(self, location: str) -> str:
        return f"{self.base}/file?{urlencode({'location': location})}"

    def manifest(self) -> str:
        return f"{self.base}/manifest.jsonl"


def _html(title: str, body: str) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _money(value: Any) -> str:
    return f"${value:,.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "unknown"


def _counts(pairs: list[tuple[str, str, Any]]) -> str:
    items = "".join(
        f'<li>{escape(label)}<b data-count="{escape(name)}">{escape(str(value))}</b></li>'
        for name, label, value in pairs
    )
    return f'<ul id="sam3-counts">{items}</ul>'


def _table(rows: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def single_page(document: Any, urls: Urls, files_served: bool) -> str:
    """The input with its masks outlined, their scores and boxes, cost, request id, timings and stored files."""
    timings = document.timings
    facts = [
        ("endpoint", escape(document.endpoint_id)),
        ("request id", f"<code>{escape(document.request_id)}</code>"),
        ("cost", escape(_money(document.cost_usd))),
        ("submitted", escape(str(timings.submitted_at or "unknown"))),
        ("completed", escape(str(timings.completed_at))),
        ("waited", escape(f"{timings.wait_seconds} s" if timings.wait_seconds is not None else "unknown")),
        ("input", escape(str(document.image.source if document.image else "unknown"))),
    ]
    if document.cache is not None:
        facts.append(("from the result cache", escape(str(document.cache.hit))))
    masks = getattr(document, "masks", None) or []
    mask_rows = "".join(
        f'<tr data-mask-index="{m.index}"><td>#{m.index}</td><td class="score">'
        f"{escape('' if m.score is None else f'{m.score:.3f}')}</td>"
        f"<td>{escape(str(m.pixel_box or m.box or ''))}</td><td>{_file_link(m.location, urls, files_served)}</td></tr>"
        for m in masks
    )
    body = f"<h1>SAM 3 result</h1>{_table(facts)}"
    if masks or getattr(document, "preview", None) is not None:
        body += f'<h2>Masks</h2><img class="sam3-overlay" alt="input with masks" src="{escape(urls.overlay())}">'
    body += (
        '<h2>Scores and boxes</h2><table id="sam3-masks"><tr><th>mask</th><th>score</th><th>box (pixels)</th>'
        f"<th>file</th></tr>{mask_rows}</table>"
    )
    files = getattr(document, "files", None) or []
    if files:
        links = "".join(f"<li>{escape(f.field)}: {_file_link(f.location, urls, files_served)}</li>" for f in files)
        body += f"<h2>Files</h2><ul>{links}</ul>"
    return _html("SAM 3 result", body)


def _file_link(location: str | None, urls: Urls, files_served: bool) -> str:
    """A stored file through the file route (which checks it lies in the task's output location); otherwise
    fal's own https URL as a plain link (it expires), or just its name."""
    if not location:
        return '<span class="muted">inline</span>'
    name = escape(location.rsplit("/", 1)[-1][:80])
    if files_served:
        return f'<a href="{escape(urls.file(location))}">{name}</a>'
    if location.startswith("https://"):
        return f'<a href="{escape(location)}" rel="noreferrer" target="_blank">{name}</a>'
    return name


def batch_page(summary: dict[str, Any], page: Any, status: str | None, number: int, urls: Urls) -> str:
    """Counts, billed vs estimated cost, a paged gallery filtered by status, failures with their reasons."""
    pending = max(int(summary.get("unfinished") or 0) - int(summary.get("failed") or 0), 0)
    pending = max(pending - int(summary.get("invalid") or 0), 0)
    body = "<h1>SAM 3 batch</h1>" + _counts(
        [
            ("images", "images", summary.get("images", 0)),
            ("succeeded", "succeeded", summary.get("succeeded", 0)),
            ("failed", "failed", summary.get("failed", 0)),
            ("invalid", "invalid", summary.get("invalid", 0)),
            ("pending", "still at fal", pending),
            ("cache_hits", "from the cache", summary.get("cache_hits", 0)),
        ]
    )
    body += _table(
        [
            ("endpoint", escape(str(summary.get("endpoint_id", "")))),
            ("billed", escape(_money(summary.get("cost_usd")))),
            ("estimated", escape(_money(summary.get("cost_estimate_usd")))),
            ("manifest", f'<a href="{escape(urls.manifest())}" download="manifest.jsonl">manifest.jsonl</a>'),
        ]
    )
    return _html("SAM 3 batch", body + _gallery(page, status, number, urls))


def _gallery(page: Any, status: str | None, number: int, urls: Urls) -> str:
    filters = [f'<a href="{escape(urls.page())}">all ({sum(page.counts.values())})</a>'] + [
        f'<a href="{escape(urls.page(name))}">{escape(name)} ({count})</a>'
        for name, count in sorted(page.counts.items())
    ]
    cells = "".join(_cell(position, row, urls) for position, row in page.rows)
    pages = max(1, -(-page.matched // PAGE_SIZE))
    links = []
    if number > 1:
        links.append(f'<a href="{escape(urls.page(status, number - 1))}">previous</a>')
    if number < pages:
        links.append(f'<a href="{escape(urls.page(status, number + 1))}">next</a>')
    shown = f"{escape(status or 'all')}: page {number} of {pages} ({page.matched} rows)"
    return (
        f'<h2>Images</h2><nav id="sam3-filters">{"".join(filters)}</nav><p class="muted">{shown}</p>'
        f'<div class="gallery">{cells}</div><nav id="sam3-pages">{"".join(links)}</nav>'
    )


def _cell(position: int, row: Any, urls: Urls) -> str:
    name = escape(str(row.source).rsplit("/", 1)[-1][:120])
    if row.succeeded:
        picture = (
            f'<img class="sam3-thumb" loading="lazy" alt="{name}" src="{escape(urls.thumb(position, row.index))}">'
        )
        scores = ", ".join(f"{s:.2f}" for s in (row.scores or []) if isinstance(s, (int, float)) and s is not True)
        detail = f"{len(row.masks or [])} masks" + (f" · {escape(scores)}" if scores else "")
    else:
        picture = ""
        detail = (
            f'<span class="failed">{escape(row.status)}: {escape(str(row.error or "no reason recorded")[:500])}</span>'
        )
    return (
        f'<div class="cell" data-index="{row.index}">{picture}<div>#{row.index} {name}</div><div>{detail}</div></div>'
    )


def running_batch_page(view: Any) -> str:
    """A batch still running or deferred: progress from what it journalled so far."""
    counts = view.counts
    at_fal = sum(counts.get(k, 0) for k in ("pending", "sending", "submitted", "completed"))
    body = "<h1>SAM 3 batch (in progress)</h1>" + _counts(
        [
            ("images", "images", view.images),
            ("succeeded", "succeeded", counts.get("done", 0)),
            ("failed", "failed", counts.get("failed", 0)),
            ("invalid", "invalid", counts.get("invalid", 0)),
            ("pending", "still at fal or to send", at_fal),
        ]
    )
    facts = [
        ("task state", escape(str(view.record.state))),
        ("endpoint", escape(view.endpoint_id)),
        ("requests billed so far", escape(str(view.billed))),
        ("estimated cost", escape(_money(view.estimate_usd))),
    ]
    return _html("SAM 3 batch", body + _table(facts) + '<p class="muted">Reload to see it progress.</p>')


def waiting_page(view: Any) -> str:
    """A single-image task whose request is at fal."""
    request = view.request
    facts = [
        ("task state", escape(str(view.record.state))),
        ("request id", f"<code>{escape(str(request.get('request_id', 'being submitted')))}</code>"),
        ("endpoint", escape(str(request.get("endpoint_id", "")))),
    ]
    return _html("SAM 3 request", "<h1>SAM 3 request at fal</h1>" + _table(facts))


def other_page(record: Any, reasons: list[str]) -> str:
    why = "".join(f"<li>{escape(r)}</li>" for r in reasons)
    body = (
        f"<h1>{escape(record.key.task_id)}</h1><p>This is not a SAM 3 task, or it has stored no SAM 3 result yet "
        f"(state: {escape(str(record.state))}).</p>" + (f"<ul>{why}</ul>" if why else "")
    )
    return _html("not a SAM 3 task", body)


def not_found_page(key: TaskKey) -> str:
    return _html("no such task", f"<h1>No task instance {escape(key.task_id)} in run {escape(key.run_id)}</h1>")

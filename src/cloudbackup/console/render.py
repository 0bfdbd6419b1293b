"""HTML responses: Jinja2 templates (autoescaped), the console's filters, its security headers."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from importlib.resources import files
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from litestar import MediaType, Response

from cloudbackup.client import format as fmt
from cloudbackup.client.drafts import path_text, schedule_words

# Scripts, styles and form targets only from this origin; no framing (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def _words(value: str | None) -> str:
    """``backup_in_progress`` -> ``in progress``; ``completed_with_errors`` -> ``completed with
    errors``."""
    text = str(value or "")
    for prefix in ("backup_", "restore_", "cleanup_"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text.replace("_", " ")


NOTHING = "\u2013"  # the pages' one mark for "no value" (an en dash; the CLI's tables use "-")


def _dashed(format_value: Callable[..., str]) -> Callable[..., str]:
    """``format_value`` with the CLI's ``-`` for "no value" shown as the pages' en dash."""

    def shown(*args: Any) -> str:
        text = format_value(*args)
        return NOTHING if text == "-" else text

    return shown


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("cloudbackup.console", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        size=_dashed(fmt.size),
        rate=_dashed(fmt.rate),
        duration=_dashed(fmt.duration),
        when=_dashed(fmt.when),
        short=_dashed(fmt.short_id),
        ref=fmt.ref_id,
        words=_words,
        schedule=schedule_words,
        path=path_text,
    )
    env.globals.update(elapsed=_dashed(fmt.elapsed))
    return env


def page(template: str, status: int = 200, **context: Any) -> Response[str]:
    html = environment().get_template(template).render(**context)
    return Response(
        html, status_code=status, media_type=MediaType.HTML, headers=dict(SECURITY_HEADERS)
    )


@lru_cache(maxsize=8)
def static_file(name: str) -> tuple[bytes, str] | None:
    """The bytes and content type of a file in ``web/static`` (only known kinds, no folders)."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        return None
    resource = files("cloudbackup.console").joinpath("static", name)
    if not resource.is_file():
        return None
    return resource.read_bytes(), STATIC_TYPES[suffix]

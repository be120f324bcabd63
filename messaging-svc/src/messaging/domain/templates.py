"""Templates: versioned, localised content rendered with Liquid (python-liquid 2), sandboxed.

The sandbox: no template loader (`include` / `render` are not tags here, so a template can never read
another template or a file), bounded loops, output, local variables and context depth. HTML bodies
escape every variable (a profile's name cannot inject markup); text parts do not. A variable without a
value renders empty and is reported in `Rendered.missing` (a dotted name such as `profile.first_name`);
a `default` filter or an `if` test counts as handling it. Syntax errors are `TemplateError`s whose text
names the part and the line.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, ClassVar

from liquid import BoundTemplate, Environment, Undefined
from liquid.context import RenderContext
from liquid.exceptions import LiquidError
from liquid.undefined import UNDEFINED

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.errors import InvalidArgument
from messaging.domain.names import CHANNEL_OF

PARTS = ("subject", "title", "body_text", "body_html", "data_json")
MAX_VARIANTS = 50
MAX_NAME = 200
MAX_DESCRIPTION = 2000
MAX_PART_CHARS = {"subject": 1000, "title": 1000, "body_text": 256 * 1024, "body_html": 512 * 1024,
                  "data_json": 64 * 1024}
CACHE_SIZE = 4096

_LOCALE = re.compile(r"^([A-Za-z]{2,3})(?:[-_]([A-Za-z]{4}))?(?:[-_]([A-Za-z]{2}|[0-9]{3}))?$")


@dataclass(frozen=True, slots=True)
class Variant:
    locale: str
    subject: str = ""
    body_text: str = ""
    body_html: str = ""
    title: str = ""
    data_json: str = ""


@dataclass(frozen=True, slots=True)
class TemplateVersion:
    template_id: str
    version: int
    channel: str
    name: str
    default_locale: str
    variants: tuple[Variant, ...]


@dataclass(frozen=True, slots=True)
class Rendered:
    locale: str
    subject: str
    body_text: str
    body_html: str
    title: str
    data_json: str
    missing: tuple[str, ...]


class TemplateError(Exception):
    """A template that cannot be compiled or rendered; str() is a detail fit for the template's author."""


# ---------------------------------------------------------------------------------------------- locales

def normalize_locale(value: str) -> str | None:
    """A BCP 47-ish tag in canonical case ("zh-cn" -> "zh-CN", "zh_hant" -> "zh-Hant"), None if not one."""
    m = _LOCALE.match(value.strip())
    if m is None:
        return None
    lang, script, region = m.groups()
    return "-".join(p for p in (lang.lower(), script.title() if script else None,
                                region.upper() if region else None) if p)


def _language(locale: str) -> str:
    return locale.split("-", 1)[0].lower()


def choose_variant(version: TemplateVersion, locale: str | None) -> Variant:
    """The variant for `locale`: exact, then the bare language ("zh" for "zh-CN"), then any variant of the
    language ("zh-CN" for "zh"), then the default locale, then the first."""
    if not version.variants:
        raise TemplateError(f"template {version.template_id} v{version.version} has no variants")
    wanted = normalize_locale(locale or "") if locale else None
    by_locale = {v.locale.lower(): v for v in version.variants}
    if wanted:
        lang = _language(wanted)
        found = by_locale.get(wanted.lower()) or by_locale.get(lang)
        if found is None:
            found = next((v for v in version.variants if _language(v.locale) == lang), None)
        if found is not None:
            return found
    return by_locale.get(version.default_locale.lower()) or version.variants[0]


# ---------------------------------------------------------------------------------------------- liquid

_MISSING: ContextVar[list[str] | None] = ContextVar("template_missing", default=None)


class _Missing(Undefined):
    """Renders empty and notes its name when output (so `default` and `if` tests do not count)."""

    __slots__ = ()

    def __str__(self) -> str:
        seen = _MISSING.get()
        if seen is not None:
            seen.append(_dotted(self.name, self.hint))
        return ""


def _dotted(root: str, hint: str | None) -> str:
    if hint and hint.endswith(" is undefined"):
        return hint.removesuffix(" is undefined").strip("'")
    return root


def _path_text(path: Iterable[object]) -> str:
    out = ""
    for segment in path:
        if isinstance(segment, str):
            out += f".{segment}" if out else segment
        else:
            out += f"[{segment}]"
    return out


class _Context(RenderContext):
    def get(self, path: list[object], *, token: Any, default: object = UNDEFINED) -> object:
        found = super().get(path, token=token, default=default)
        if isinstance(found, _Missing):  # name the whole path asked for, not only its first segment
            found.hint = f"{_path_text(path)} is undefined"
        return found


class _Template(BoundTemplate):
    context_class = _Context


class _Sandbox(Environment):
    template_class = _Template
    context_depth_limit: ClassVar[int] = 10
    loop_iteration_limit: ClassVar[int | None] = 10_000
    local_namespace_limit: ClassVar[int | None] = 256 * 1024
    output_stream_limit: ClassVar[int | None] = 1024 * 1024

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=_Missing, strict_filters=True)
        for tag in ("include", "render"):  # no loader, no partials: a template sees only its variables
            self.tags.pop(tag, None)


_TEXT_ENV = _Sandbox(autoescape=False)
_HTML_ENV = _Sandbox(autoescape=True)


def _line(source: str, index: int) -> int:
    return source.count("\n", 0, max(index, 0)) + 1


def _error(part: str, source: str, exc: Exception) -> TemplateError:
    if isinstance(exc, LiquidError):
        message = str(exc.message or type(exc).__name__)
        token = exc.token
        if token is not None and token.start_index >= 0:
            where = f"line {_line(token.source or source, token.start_index)}"
        else:
            where = "end of template"
        return TemplateError(f"{part}: {message} ({where})")
    return TemplateError(f"{part}: {type(exc).__name__}: {exc}")


def _compile(part: str, source: str) -> BoundTemplate:
    env = _HTML_ENV if part == "body_html" else _TEXT_ENV
    try:
        template = env.from_string(source)
    except LiquidError as exc:
        raise _error(part, source, exc) from None
    except RecursionError:
        raise TemplateError(f"{part}: the template is nested too deeply") from None
    unknown = sorted(set(template.analyze(include_partials=False).filters) - set(env.filters))
    if unknown:
        spans = template.analyze(include_partials=False).filters[unknown[0]]
        line = _line(source, spans[0].index) if spans else 1
        raise TemplateError(f"{part}: unknown filter '{unknown[0]}' (line {line})")
    return template


def _render(part: str, template: BoundTemplate, variables: Mapping[str, Any]) -> str:
    try:
        return template.render(variables)
    except Exception as exc:  # anything a template's author can provoke (limits, bad filter args) is theirs
        raise _error(part, "", exc) from None


def _data_sources(data_json: str) -> Any:
    """The parsed data_json; TemplateError when it is not a JSON object."""
    try:
        data = json.loads(data_json)
    except ValueError as exc:
        raise TemplateError(f"data_json: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TemplateError("data_json: must be a JSON object")
    return data


def _strings(value: Any, path: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def _fill(value: Any, rendered: Mapping[str, str], path: str = "") -> Any:
    """`value` with each string replaced by its rendering (data_json is rendered leaf by leaf, so a
    variable can never break the JSON)."""
    if isinstance(value, str):
        return rendered[path]
    if isinstance(value, dict):
        return {k: _fill(v, rendered, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, rendered, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def compile_variant(variant: Variant) -> None:
    """TemplateError naming the part for the first part of `variant` that does not compile."""
    for part in PARTS:
        source = getattr(variant, part)
        if not source:
            continue
        if part == "data_json":
            for path, text in _strings(_data_sources(source)):
                _compile(f"data_json.{path}" if path else "data_json", text)
        else:
            _compile(part, source)


class Renderer:
    """Renders template versions; one per process. Compiled templates are cached by (template, version,
    locale, part): versions never change, so entries never go stale (the oldest are dropped past a bound)."""

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        self._cache: OrderedDict[tuple[str, int, str, str], BoundTemplate] = OrderedDict()
        self._size = cache_size
        self._texts: OrderedDict[tuple[str, int, str, str], str] = OrderedDict()  # text sources derived from HTML
        self._lock = threading.Lock()  # callers may render in worker threads

    def _template(self, version: TemplateVersion, variant: Variant, part: str, source: str) -> BoundTemplate:
        key = (version.template_id, version.version, variant.locale, part)
        if version.version:
            with self._lock:
                found = self._cache.get(key)
                if found is not None:
                    self._cache.move_to_end(key)
                    return found
        compiled = _compile(part.replace(":", "."), source)
        if version.version:  # version 0 is an unsaved draft: never cached
            with self._lock:
                self._cache[key] = compiled
                if len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        return compiled

    def _derived_text(self, version: TemplateVersion, variant: Variant) -> str:
        key = (version.template_id, version.version, variant.locale, "body_text:source")
        found = self._texts.get(key) if version.version else None
        if found is None:
            found = html_to_text(variant.body_html)
            if version.version:
                with self._lock:
                    self._texts[key] = found
                    if len(self._texts) > self._size:
                        self._texts.popitem(last=False)
        return found

    def render(self, version: TemplateVersion, variant: Variant, variables: Mapping[str, Any]) -> Rendered:
        """The variant rendered with `variables`; TemplateError for syntax or render errors."""
        missing: list[str] = []
        token = _MISSING.set(missing)
        try:
            out: dict[str, str] = {}
            for part in ("subject", "title", "body_text", "body_html"):
                source = getattr(variant, part)
                out[part] = _render(part, self._template(version, variant, part, source), variables) if source else ""
            if not variant.body_text.strip() and variant.body_html:
                # the text part of an HTML-only variant: its HTML *source* turned into a text template once
                # (cached with the version), then rendered like any text part: values come out unescaped
                derived = self._derived_text(version, variant)
                out["body_text"] = _render("body_text", self._template(version, variant, "body_text:derived",
                                                                        derived), variables) if derived else ""
            data = ""
            if variant.data_json:
                parsed = _data_sources(variant.data_json)
                rendered = {path: _render(f"data_json.{path}",
                                          self._template(version, variant, f"data_json:{path}", text), variables)
                            for path, text in _strings(parsed)}
                data = json.dumps(_fill(parsed, rendered), ensure_ascii=False, separators=(",", ":"))
        finally:
            _MISSING.reset(token)
        # surrounding whitespace (often left by an empty variable) would only cost SMS characters
        body_text = out["body_text"].strip()
        return Rendered(locale=variant.locale, subject=" ".join(out["subject"].split()), body_text=body_text,
                        body_html=out["body_html"], title=out["title"].strip(), data_json=data,
                        missing=tuple(dict.fromkeys(missing)))


# ---------------------------------------------------------------------------------------------- text from HTML

_BLOCKS = frozenset({"p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
                     "blockquote", "pre", "hr", "section", "article", "header", "footer", "td", "th"})
_SKIP = frozenset({"script", "style", "head", "title", "template"})


class _TextOf(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0
        self._links: list[tuple[str, int]] = []  # (href, len(out) when the link opened)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in _BLOCKS:
            self.out.append("\n")
        if tag == "a":
            self._links.append((dict(attrs).get("href") or "", len(self.out)))
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.out.append(alt)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self.out.append("\n")
        elif tag == "img":
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(self._skip - 1, 0)
        elif tag in _BLOCKS:
            self.out.append("\n")
        if tag == "a" and self._links:
            href, start = self._links.pop()
            text = " ".join("".join(self.out[start:]).split())
            if href and not href.startswith(("#", "mailto:", "tel:")) and href != text:
                self.out.append(f" ({href})" if text else href)

    def handle_data(self, data: str) -> None:
        if not self._skip:  # source line breaks are only whitespace: lines come from block tags
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML body: tags dropped, links as "text (url)", blocks as lines,
    whitespace collapsed."""
    parser = _TextOf()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.out).split("\n"))
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# ---------------------------------------------------------------------------------------------- validation

def _invalid(detail: str, code: str, field: str) -> InvalidArgument:
    return InvalidArgument(detail, code=code, field=field)


def variants_of(template: pb.Template) -> tuple[Variant, ...]:
    """The request's variants with canonical locales (call after check_template)."""
    return tuple(Variant(locale=normalize_locale(v.locale) or v.locale, subject=v.subject, body_text=v.body_text,
                         body_html=v.body_html, title=v.title, data_json=v.data_json) for v in template.variants)


def default_locale_of(template: pb.Template) -> str:
    """The canonical default locale; empty means the first variant's."""
    if template.default_locale:
        return normalize_locale(template.default_locale) or template.default_locale
    return normalize_locale(template.variants[0].locale) or "" if template.variants else ""


def check_template(template: pb.Template) -> None:
    """INVALID_ARGUMENT naming the field for anything that would make a template unusable."""
    if not template.name.strip():
        raise _invalid("name is required", "name_required", "name")
    if len(template.name) > MAX_NAME:
        raise _invalid(f"name: at most {MAX_NAME} characters", "name_too_long", "name")
    if len(template.description) > MAX_DESCRIPTION:
        raise _invalid(f"description: at most {MAX_DESCRIPTION} characters", "description_too_long", "description")
    channel = CHANNEL_OF.get(template.channel)
    if channel is None or channel == "best":
        raise _invalid("channel must be one of email, sms, push, in_app, webhook", "invalid_channel", "channel")
    if not template.variants:
        raise _invalid("at least one variant is required", "variants_required", "variants")
    if len(template.variants) > MAX_VARIANTS:
        raise _invalid(f"at most {MAX_VARIANTS} variants", "too_many_variants", "variants")
    seen: set[str] = set()
    for i, v in enumerate(template.variants):
        at = f"variants[{i}]"
        locale = normalize_locale(v.locale)
        if locale is None:
            raise _invalid(f"{at}.locale: {v.locale!r} is not a locale such as en or zh-CN", "invalid_locale",
                           f"{at}.locale")
        if locale.lower() in seen:
            raise _invalid(f"{at}.locale: a second variant for {locale}", "duplicate_locale", f"{at}.locale")
        seen.add(locale.lower())
        _check_variant(channel, v, at)
    if template.default_locale:
        default = normalize_locale(template.default_locale)
        if default is None or default.lower() not in seen:
            raise _invalid(f"default_locale {template.default_locale!r} has no variant", "invalid_default_locale",
                           "default_locale")


def _check_variant(channel: str, v: pb.TemplateVariant, at: str) -> None:
    for part in PARTS:
        value = getattr(v, part)
        if len(value) > MAX_PART_CHARS[part]:
            raise _invalid(f"{at}.{part}: at most {MAX_PART_CHARS[part]} characters", "content_too_large",
                           f"{at}.{part}")
        if "\x00" in value:
            raise _invalid(f"{at}.{part}: must not contain NUL characters", "invalid_text", f"{at}.{part}")
    if channel == "email":
        if not v.subject.strip():
            raise _invalid(f"{at}.subject: an email needs a subject", "subject_required", f"{at}.subject")
        if not (v.body_html.strip() or v.body_text.strip()):
            raise _invalid(f"{at}.body_html: an email needs body_html or body_text", "body_required",
                           f"{at}.body_html")
    elif channel in ("sms", "push", "in_app") and not v.body_text.strip():
        raise _invalid(f"{at}.body_text: a {channel} message needs body_text", "body_required", f"{at}.body_text")
    elif channel == "webhook" and not v.data_json.strip():
        raise _invalid(f"{at}.data_json: a webhook needs a JSON body in data_json", "body_required",
                       f"{at}.data_json")
    if v.data_json:
        try:
            data = json.loads(v.data_json)
        except ValueError as exc:
            raise _invalid(f"{at}.data_json: not valid JSON ({exc})", "invalid_data_json", f"{at}.data_json") from None
        if not isinstance(data, dict):
            raise _invalid(f"{at}.data_json: must be a JSON object", "invalid_data_json", f"{at}.data_json")
    for part in PARTS:
        source = getattr(v, part)
        if not source:
            continue
        try:
            compile_variant(Variant(locale="", **{part: source}))
        except TemplateError as exc:
            raise _invalid(f"{at}.{exc}", "template_syntax_error", f"{at}.{part}") from None

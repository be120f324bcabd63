"""Template rendering and validation, without I/O: variables, missing variables, escaping, locale choice,
syntax errors, text derived from HTML, the sandbox and its limits."""

from __future__ import annotations

import json

import pytest

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.errors import InvalidArgument
from messaging.domain.templates import (
    Renderer,
    TemplateError,
    TemplateVersion,
    Variant,
    check_template,
    choose_variant,
    compile_variant,
    default_locale_of,
    html_to_text,
    normalize_locale,
    variants_of,
)


def version(*variants: Variant, default: str = "en", channel: str = "email", number: int = 1) -> TemplateVersion:
    return TemplateVersion(template_id="t1", version=number, channel=channel, name="Welcome", default_locale=default,
                           variants=variants)


def render(variant: Variant, variables: dict | None = None, **kw):
    v = version(variant, default=variant.locale, **kw)
    return Renderer().render(v, variant, variables or {})


def test_variables_fill_every_part_including_nested_and_loops():
    variant = Variant("en", subject="Hi {{ profile.first_name }}", title="{{ coupon.code }}",
                      body_text="{% for r in recommendations %}{{ r.name }}:{{ r.price }};{% endfor %}",
                      data_json='{"link": "{{ links.preferences }}", "n": 3, "tags": ["{{ loyalty.tier }}"]}')
    out = render(variant, {"profile": {"first_name": "Rachel"}, "coupon": {"code": "WELCOME10"},
                           "recommendations": [{"name": "Tea", "price": 12}, {"name": "Cup", "price": 3}],
                           "links": {"preferences": "https://x/p/abc"}, "loyalty": {"tier": "gold"}})
    assert out.subject == "Hi Rachel"
    assert out.title == "WELCOME10"
    assert out.body_text == "Tea:12;Cup:3;"
    assert json.loads(out.data_json) == {"link": "https://x/p/abc", "n": 3, "tags": ["gold"]}
    assert out.missing == ()
    assert out.locale == "en"


def test_missing_variables_render_empty_and_are_listed_by_dotted_name_once():
    variant = Variant("en", subject="Hi {{ profile.first_name }}{{ profile.first_name }}",
                      body_text="{{ coupon.code }} {{ recommendations[1].name }} {{ known }}")
    out = render(variant, {"known": "k", "recommendations": [{"name": "a"}]})
    assert out.subject == "Hi"
    assert out.body_text == "k"
    assert out.missing == ("profile.first_name", "coupon.code", "recommendations[1].name")


def test_default_filter_and_if_tests_do_not_count_as_missing():
    variant = Variant("en", subject="Hi {{ profile.first_name | default: 'there' }}",
                      body_text="{% if coupon %}{{ coupon.code }}{% else %}no coupon{% endif %}")
    out = render(variant)
    assert (out.subject, out.body_text, out.missing) == ("Hi there", "no coupon", ())


def test_html_escapes_variables_but_text_and_subject_do_not():
    name = '<script>alert("x")</script> & Co'
    variant = Variant("en", subject="For {{ name }}", body_text="Dear {{ name }}",
                      body_html='<p>Dear {{ name }}</p><a href="{{ url }}">go</a>')
    out = render(variant, {"name": name, "url": "https://shop.example/?a=1&b=2"})
    assert out.subject == f"For {name}"
    assert out.body_text == f"Dear {name}"
    assert "<script>" not in out.body_html
    assert "&lt;script&gt;" in out.body_html and "&amp; Co" in out.body_html
    assert 'href="https://shop.example/?a=1&amp;b=2"' in out.body_html


def test_data_json_values_cannot_break_the_json():
    out = render(Variant("en", data_json='{"title": "{{ t }}"}', body_text="x"), {"t": 'a "quoted", \\ value'},
                 channel="push")
    assert json.loads(out.data_json) == {"title": 'a "quoted", \\ value'}


def test_text_is_derived_from_html_when_empty():
    variant = Variant("en", subject="s", body_html="""
        <html><head><title>ignored</title><style>p {color: red}</style></head><body>
        <h1>Hello   {{ name }}</h1>
        <p>Your <b>order</b>&nbsp;shipped.</p>
        <p><a href="https://shop.example/o/1">Track it</a> or <a href="mailto:help@shop.example">mail us</a>
        <a href="https://shop.example/x">https://shop.example/x</a></p>
        <ul><li>One</li><li>Two</li></ul><script>var x = 1;</script></body></html>""")
    out = render(variant, {"name": "Rachel"})
    assert out.body_text == (
        "Hello Rachel\n\nYour order shipped.\n\nTrack it (https://shop.example/o/1) or mail us "
        "https://shop.example/x\n\nOne\n\nTwo"
    )


def test_explicit_text_is_kept_even_with_html():
    out = render(Variant("en", subject="s", body_text="plain {{ a }}", body_html="<p>rich</p>"), {"a": 1})
    assert out.body_text == "plain 1"


def test_html_to_text_collapses_whitespace():
    assert html_to_text("<div>a\n\n   b</div><br/><br><br>c") == "a b\n\nc"


@pytest.mark.parametrize(
    ("asked", "expected"),
    [("zh-CN", "zh-CN"), ("zh-cn", "zh-CN"), ("zh_CN", "zh-CN"), ("zh-TW", "zh-CN"), ("zh", "zh-CN"),
     ("en-GB", "en"), ("en", "en"), ("fr", "en"), ("", "en"), (None, "en"), ("not a locale!", "en")],
)
def test_choose_variant_exact_then_language_then_default(asked, expected):
    v = version(Variant("de"), Variant("en"), Variant("zh-CN"), default="en")
    assert choose_variant(v, asked).locale == expected


def test_choose_variant_prefers_the_bare_language_over_another_region():
    v = version(Variant("zh-TW"), Variant("zh"), default="zh-TW")
    assert choose_variant(v, "zh-CN").locale == "zh"
    assert choose_variant(v, "zh-TW").locale == "zh-TW"


def test_choose_variant_falls_back_to_the_first_when_default_is_absent():
    v = version(Variant("de"), Variant("fr"), default="en")
    assert choose_variant(v, "ja").locale == "de"


def test_normalize_locale():
    assert normalize_locale("zh-cn") == "zh-CN"
    assert normalize_locale("EN") == "en"
    assert normalize_locale("zh-hant-tw") == "zh-Hant-TW"
    assert normalize_locale("es-419") == "es-419"
    for bad in ("", "e", "english", "en-", "en-USA1", "12"):
        assert normalize_locale(bad) is None


def test_syntax_error_names_part_and_line():
    with pytest.raises(TemplateError) as err:
        compile_variant(Variant("en", body_html="<p>ok</p>\n<p>{% if x %}</p>\n{% bogus %}"))
    assert str(err.value) == "body_html: unexpected tag 'bogus' (line 3)"
    with pytest.raises(TemplateError, match=r"^subject: .*end of template"):
        compile_variant(Variant("en", subject="{% if x %}never closed"))
    with pytest.raises(TemplateError, match=r"^body_text: unknown filter 'shout' \(line 2\)"):
        compile_variant(Variant("en", body_text="a\n{{ x | shout }}"))


def test_render_reports_syntax_errors_as_template_errors():
    with pytest.raises(TemplateError, match="body_text"):
        render(Variant("en", body_text="{{ x "), channel="sms")


def test_sandbox_has_no_include_or_render():
    for tag in ("include", "render"):
        with pytest.raises(TemplateError, match=f"unexpected tag '{tag}' \\(line 1\\)"):
            compile_variant(Variant("en", body_text=f"{{% {tag} '/etc/passwd' %}}"))


def test_loop_and_output_limits_stop_runaway_templates():
    with pytest.raises(TemplateError, match="loop iteration limit"):
        render(Variant("en", body_text="{% for i in (1..1000000) %}{{ i }}{% endfor %}"), channel="sms")
    big = "{% for i in (1..5000) %}" + "x" * 500 + "{% endfor %}"
    with pytest.raises(TemplateError, match="output stream limit"):
        render(Variant("en", body_text=big), channel="sms")


def test_render_errors_in_filters_are_template_errors():
    with pytest.raises(TemplateError, match="body_text"):
        render(Variant("en", body_text="{{ 1 | divided_by: 0 }}"), channel="sms")


def test_renderer_caches_compiled_parts_per_version():
    renderer = Renderer()
    variant = Variant("en", body_text="Hi {{ n }}")
    v = version(variant)
    assert renderer.render(v, variant, {"n": 1}).body_text == "Hi 1"
    assert len(renderer._cache) == 1
    assert renderer.render(v, variant, {"n": 2}).body_text == "Hi 2"
    assert len(renderer._cache) == 1


# ---- validation ------------------------------------------------------------------------------------

def email(**kw) -> pb.Template:
    t = pb.Template(name="Welcome", channel=pb.CHANNEL_EMAIL, default_locale="en")
    t.variants.add(locale="en", subject="Hi {{ profile.first_name }}", body_html="<p>Welcome</p>")
    t.variants.add(locale="zh-cn", subject="你好", body_text="欢迎")
    for k, v in kw.items():
        setattr(t, k, v)
    return t


def field_of(template: pb.Template) -> tuple[str, str]:
    with pytest.raises(InvalidArgument) as err:
        check_template(template)
    return err.value.extra["field"], err.value.code


def test_a_valid_template_passes_and_locales_are_normalised():
    t = email()
    check_template(t)
    assert [v.locale for v in variants_of(t)] == ["en", "zh-CN"]
    assert default_locale_of(t) == "en"
    t.default_locale = ""
    assert default_locale_of(t) == "en"


def test_validation_names_the_field():
    assert field_of(email(name=" ")) == ("name", "name_required")
    assert field_of(email(channel=pb.CHANNEL_UNSPECIFIED)) == ("channel", "invalid_channel")
    assert field_of(email(channel=pb.CHANNEL_BEST)) == ("channel", "invalid_channel")
    assert field_of(email(default_locale="fr")) == ("default_locale", "invalid_default_locale")
    assert field_of(pb.Template(name="x", channel=pb.CHANNEL_SMS)) == ("variants", "variants_required")

    t = email()
    t.variants.add(locale="ZH-CN", subject="s", body_text="b")
    assert field_of(t) == ("variants[2].locale", "duplicate_locale")
    t = email()
    t.variants[1].locale = "chinese"
    assert field_of(t) == ("variants[1].locale", "invalid_locale")
    t = email()
    t.variants[1].subject = ""
    assert field_of(t) == ("variants[1].subject", "subject_required")
    t = email()
    t.variants[0].body_html = ""
    assert field_of(t) == ("variants[0].body_html", "body_required")
    t = email()
    t.variants[1].subject = "{{ oops"
    assert field_of(t) == ("variants[1].subject", "template_syntax_error")
    t = email()
    t.variants[0].data_json = "[1, 2"
    assert field_of(t) == ("variants[0].data_json", "invalid_data_json")
    t.variants[0].data_json = "[1, 2]"
    assert field_of(t) == ("variants[0].data_json", "invalid_data_json")
    t.variants[0].data_json = '{"a": "{% include \'x\' %}"}'
    assert field_of(t) == ("variants[0].data_json", "template_syntax_error")


def test_sms_and_push_need_body_text():
    for channel in (pb.CHANNEL_SMS, pb.CHANNEL_PUSH):
        t = pb.Template(name="x", channel=channel)
        t.variants.add(locale="en", title="only a title")
        assert field_of(t) == ("variants[0].body_text", "body_required")
        t.variants[0].body_text = "ok {{ x }}"
        check_template(t)


def test_syntax_error_detail_says_where():
    t = email()
    t.variants[0].body_html = "<p>\n{% for x in %}{% endfor %}"
    with pytest.raises(InvalidArgument) as err:
        check_template(t)
    assert err.value.detail.startswith("variants[0].body_html: ")

"""The HTML report: self-contained, readable, and safe with hostile bundle strings."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from attest.report import render_report
from attest.report.html import VERDICT_TEXT

ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "h3", "p", "section", "div",
    "figure", "figcaption", "img", "dl", "dt", "dd", "table", "tr", "th", "td", "span", "strong", "ul", "li", "footer",
}  # fmt: skip
HOSTILE = "<script>alert(1)</script>"


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


BASE_PNG, SUSPECT_PNG, SHEET_PNG = _png((200, 0, 0)), _png((0, 200, 0)), _png((0, 0, 200))


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    p.close()
    return p


def sample_report(**over: Any) -> dict[str, Any]:
    rep: dict[str, Any] = {
        "verdict": "match",
        "score": 0.962,
        "ci": [0.951, 0.972],
        "z": 48.3,
        "p_value": 1.2e-38,
        "threshold": 0.5,
        "coverage": 0.973,
        "method": "huref-ics default",
        "layers": [{"a": i, "b": i, "terms": {"qk": 0.98 - i / 100, "vo": 0.97, "ffn": -0.2}} for i in range(4)],
        "signature": {"valid": True, "kid": "ab" * 32, "issuer": "ACME Labs", "subject": "acme-7b"},
        "subject": {
            "base": {"files": [{"name": "model.safetensors", "sha256": "1" * 64}], "root": "2" * 64},
            "suspect": {"files": [{"name": "suspect.gguf", "sha256": "3" * 64}], "root": "4" * 64},
        },
        "notes": ["a note"],
        "tool_version": "0.1.0",
        "time": "2026-01-01T00:00:00+00:00",
    }
    rep.update(over)
    return rep


def assert_self_contained(html: str) -> Page:
    page = parse(html)
    tags = {t for t, _ in page.tags}
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)  # no event handlers
            if name in ("src", "href", "srcset", "action", "poster", "background"):
                assert tag == "img" and name == "src", (tag, name, value)
                assert value is not None and value.startswith("data:image/png;base64,"), value[:60] if value else value
    assert "url(" not in page.style and "@import" not in page.style
    csp = [a for t, a in page.tags if t == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy"]
    assert csp and "default-src 'none'" in (csp[0].get("content") or "")
    return page


def images(page: Page) -> list[bytes]:
    return [base64.b64decode(a["src"].split(",", 1)[1]) for t, a in page.tags if t == "img" and a.get("src")]


def test_self_contained_with_all_images() -> None:
    html = render_report(sample_report(), BASE_PNG, SUSPECT_PNG, SHEET_PNG)
    page = assert_self_contained(html)
    assert images(page) == [BASE_PNG, SUSPECT_PNG, SHEET_PNG]
    for data in images(page):
        Image.open(io.BytesIO(data)).verify()
    assert html.startswith("<!DOCTYPE html>")


def test_verdicts_in_plain_words() -> None:
    for verdict, (headline, _) in VERDICT_TEXT.items():
        text = parse(render_report(sample_report(verdict=verdict), BASE_PNG, SUSPECT_PNG)).all_text
        assert headline in text
    text = parse(render_report(sample_report(verdict="match"), BASE_PNG, SUSPECT_PNG)).all_text
    assert "The suspect model appears to be derived from the attested base model" in text
    text = parse(render_report(sample_report(verdict="no_match"), BASE_PNG, SUSPECT_PNG)).all_text
    assert "does not appear to be derived" in text
    text = parse(render_report(sample_report(verdict="bogus"), BASE_PNG, SUSPECT_PNG)).all_text
    assert "No verdict was recorded" in text


def test_numbers_digests_and_signature_shown() -> None:
    text = parse(render_report(sample_report(), BASE_PNG, SUSPECT_PNG)).all_text
    for s in (
        "0.962",
        "0.951 to 0.972",
        "48.30",
        "1.20e-38",
        "97.3%",
        "huref-ics default",
        "ACME Labs",
        "acme-7b",
        "ab" * 32,
    ):
        assert s in text, s
    for s in ("model.safetensors", "suspect.gguf", "1" * 64, "2" * 64, "3" * 64, "4" * 64):
        assert s in text, s
    assert "valid" in text and "How to read this report" in text
    assert "+0.980" in text and "-0.200" in text  # per-layer x per-term table
    assert "0.1.0" in text and "2026-01-01T00:00:00+00:00" in text


def test_invalid_signature_is_flagged() -> None:
    text = parse(render_report(sample_report(signature={"valid": False, "kid": "00"}), BASE_PNG, SUSPECT_PNG)).all_text
    assert "NOT valid" in text and "did not verify" in text


def test_hostile_strings_are_escaped() -> None:
    rep = sample_report(
        method=HOSTILE,
        signature={"valid": True, "kid": HOSTILE, "issuer": HOSTILE, "subject": '"><img src=x onerror=alert(1)>'},
        subject={"base": {"files": [{"name": HOSTILE, "sha256": HOSTILE}], "root": HOSTILE}},
        layers=[{"a": HOSTILE, "b": 1, "terms": {HOSTILE: 0.5}}],
        notes=[HOSTILE, "</style><script>x</script>"],
        tool_version=HOSTILE,
        time=HOSTILE,
        title=HOSTILE,
    )
    html = render_report(rep, BASE_PNG, SUSPECT_PNG)
    page = assert_self_contained(html)
    assert "<script>" not in html and "<img src=x" not in html
    assert HOSTILE in page.all_text  # shown as text, not run
    assert all(t != "img" or (a.get("src") or "").startswith("data:image/png;base64,") for t, a in page.tags)


def test_missing_and_wrongly_typed_fields() -> None:
    page = assert_self_contained(render_report({}, b"", b"not a png"))
    assert "No verdict was recorded" in page.all_text
    assert images(page) == []  # non-PNG bytes are not embedded
    weird = {
        "verdict": ["match"],
        "score": "high",
        "ci": [1],
        "z": True,
        "p_value": float("nan"),
        "coverage": "all",
        "layers": "abc",
        "signature": ["x"],
        "subject": {"base": "x", "suspect": {"files": "y", "root": None}},
        "notes": "not a list",
    }
    assert_self_contained(render_report(weird, BASE_PNG, SUSPECT_PNG, b"junk"))
    text = parse(render_report(sample_report(p_value=0.0, score=float("inf")), BASE_PNG, SUSPECT_PNG)).all_text
    assert "< 1e-300" in text


def test_huge_lists_are_capped() -> None:
    layers = [{"a": i, "b": i, "terms": {"qk": 0.5}} for i in range(10_000)]
    html = render_report(sample_report(layers=layers), BASE_PNG, SUSPECT_PNG)
    assert "more layers not shown" in html
    assert len(html) < 2_000_000


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    [HOSTILE, "</style>", "<!--", "]]>", '" onload="x', "javascript:alert(1)", "&amp;<>'\""]
)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)
_report = st.dictionaries(
    st.sampled_from(
        ["verdict", "score", "ci", "z", "p_value", "threshold", "coverage", "method", "layers",
         "signature", "subject", "notes", "tool_version", "time", "title"]
    ),
    _values,
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rep=_report)
def test_fuzzed_reports_stay_self_contained(rep: dict[str, Any]) -> None:
    html = render_report(rep, BASE_PNG, SUSPECT_PNG, SHEET_PNG)
    page = assert_self_contained(html)
    assert len(images(page)) == 3


def test_real_dog_images_embed() -> None:
    from attest.render import get_renderer
    from attest.render.sheet import png_bytes

    r = get_renderer()
    z = np.random.RandomState(0).standard_normal(512)
    a = png_bytes(r.render(z))
    page = assert_self_contained(render_report(sample_report(), a, a))
    assert images(page) == [a, a]

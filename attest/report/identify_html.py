"""The HTML report of a 1:N identification: the answer, the ranking, the dogs of the top candidates.

It reuses the verify report's page, styles and escaping (attest.report.html):
the same self-contained document with inline CSS, images as data: URIs, no
scripts and a Content-Security-Policy.  Every value is escaped, because names
and reasons come from registered bundles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from attest.report.html import _CSS, _MAX_ROWS, _fmt, _fmt_p, _img, _map, _num, _s, _seq

ANSWER_TEXT: dict[str, tuple[str, str]] = {
    "match": (
        "The suspect model appears to be derived from a registered base model.",
        "That base's lineage test is significant after correcting for the number of bases tried "
        "(Holm–Bonferroni over all registered bases).",
    ),
    "no_match": (
        "The suspect model does not appear to be derived from any registered base model.",
        "Every base it could be compared with was ruled out by the lineage test.",
    ),
    "inconclusive": (
        "No registered base can be named, and none can be ruled out for every base.",
        "See the reasons below for what was missing (for example too few shared tokens).",
    ),
}

_MAX_RANKED_SHOWN = 50  # the evidence lists all N; the page shows the head of the ranking


def _answer(rec: Mapping[str, Any]) -> str:
    ans = _map(rec.get("answer"))
    v = ans.get("verdict")
    key = v if isinstance(v, str) and v in ANSWER_TEXT else "inconclusive"
    big, small = ANSWER_TEXT[key]
    parts = [f'<section class="verdict {key}"><p class="big">{escape(big)}</p><p>{escape(small)}</p>']
    base = _map(ans.get("base"))
    if base:
        parts.append(
            f"<p>Base: <strong>{_s(base.get('name'), 300)}</strong>, signed by {_s(base.get('signed_by'), 300)} "
            f"(trust store); Holm-adjusted p-value {_fmt_p(base.get('p_holm'))}.</p>"
        )
    for other in _seq(ans.get("also"))[:_MAX_ROWS]:
        om = _map(other)
        parts.append(
            f"<p>Also significant: <strong>{_s(om.get('name'), 300)}</strong> "
            f"(Holm-adjusted p-value {_fmt_p(om.get('p_holm'))}); the suspect may combine several bases.</p>"
        )
    parts.append("</section>")
    reasons = [r for r in _seq(ans.get("reasons"))[:200] if r is not None]
    if reasons:
        parts.append(
            "<section><h2>Reasons</h2><ul>" + "".join(f"<li>{_s(r)}</li>" for r in reasons) + "</ul></section>"
        )
    return "".join(parts)


def _facts(rec: Mapping[str, Any]) -> str:
    reg, mt, sus = _map(rec.get("registry")), _map(rec.get("multiple_testing")), _map(rec.get("suspect"))
    subj = _map(sus.get("subject"))
    rows = [
        ("Suspect", _s(sus.get("path_name"), 300) or "—"),
        ("Suspect subject root", f'<span class="mono">{_s(subj.get("root"), 200)}</span>' if subj.get("root") else "—"),
        ("Registered bases (N)", _s(reg.get("bases"), 20) or "—"),
        ("Bases the suspect could be compared with", _s(reg.get("comparable"), 20) or "—"),
        ("Multiple-testing correction", f"{_s(mt.get('method'), 60)} over {_s(mt.get('tests'), 20)} tests"),
        ("Family-wise error rate α", _fmt_p(mt.get("alpha"))),
        ("Evidence per base", _s(rec.get("evidence_kind"), 100) or "—"),
    ]
    kv = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<section><h2>What was compared</h2><dl class="kv">{kv}</dl></section>'


def _ranking(rec: Mapping[str, Any]) -> str:
    rows = _seq(rec.get("ranking"))
    head = (
        "<tr><th>Base</th><th>#</th><th>Signed by (trust store)</th><th>Verdict</th><th>Score</th>"
        "<th>Lineage p</th><th>Holm p</th><th>Agreement</th><th>Subject root</th></tr>"
    )
    body = []
    for r in rows[:_MAX_RANKED_SHOWN]:
        rm = _map(r)
        verdict = _s(rm.get("verdict"), 40)
        if rm.get("comparable") is False:
            verdict += " (not comparable)"
        body.append(
            f"<tr><td>{_s(rm.get('name'), 300)}</td><td>{_s(rm.get('rank'), 12)}</td>"
            f"<td>{_s(rm.get('signed_by'), 200) or '—'}</td><td>{verdict}</td>"
            f"<td>{_fmt(rm.get('score'))}</td><td>{_fmt_p(rm.get('p_value'))}</td><td>{_fmt_p(rm.get('p_holm'))}</td>"
            f'<td>{_fmt(rm.get("agreement"))}</td><td class="mono">{_s(rm.get("subject_root"), 16)}…</td></tr>'
        )
    more = (
        f'<p class="muted">{len(rows) - _MAX_RANKED_SHOWN} more bases ranked lower are listed in the evidence file.</p>'
        if len(rows) > _MAX_RANKED_SHOWN
        else ""
    )
    return (
        "<section><h2>Ranking</h2>"
        '<p class="muted">Every registered base was scored exactly as <code>attest verify</code> scores one bundle. '
        "Bases are ranked by their Holm-adjusted p-value, then by score.</p>"
        f'<div class="scroll"><table>{head}{"".join(body)}</table></div>{more}</section>'
    )


def _dogs(dogs: Sequence[tuple[Mapping[str, Any], bytes, bytes]]) -> str:
    if not dogs:
        return ""
    out = [
        "<section><h2>The dogs of the top candidates</h2>"
        "<p class=\"muted\">Each base's dog is drawn from its signed fingerprint, beside the suspect's dog drawn "
        "from the same positions (only the probe tokens the suspect has, when it lacks some). A derived model draws "
        "a look-alike dog; the answer rests on the numbers above.</p>"
    ]
    for row, base_png, suspect_png in dogs[:_MAX_ROWS]:
        name = _s(row.get("name"), 300)
        out.append(
            f"<h3>#{_s(row.get('rank'), 12)} {name}: {_s(row.get('verdict'), 40)}, score {_fmt(row.get('score'))}, "
            f"Holm p {_fmt_p(row.get('p_holm'))}</h3>"
            '<div class="dogs">'
            f"<figure>{_img(base_png, 'Dog of base ' + str(row.get('name'))[:200])}<figcaption>{name} (attested)</figcaption></figure>"
            f"<figure>{_img(suspect_png, 'Suspect dog against ' + str(row.get('name'))[:200])}"
            "<figcaption>Suspect model</figcaption></figure></div>"
        )
    out.append("</section>")
    return "".join(out)


def render_identify_report(record: Mapping[str, Any], dogs: Sequence[tuple[Mapping[str, Any], bytes, bytes]]) -> str:
    """The whole report as one HTML document (a str); `dogs` holds (ranking row, base PNG, suspect PNG)."""
    rec = _map(record)
    tool = _s(rec.get("tool_version"), 100) or "unknown"
    when = _s(rec.get("time"), 100) or "unknown"
    n = _num(_map(rec.get("registry")).get("bases"))
    title = "Model identification report"
    return "".join(
        (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="referrer" content="no-referrer">',
            f"<title>{title}</title><style>{_CSS}</style></head><body><main>",
            f"<h1>{title}</h1>",
            f'<p class="sub">Which of {int(n) if n is not None else "the"} registered base models the suspect derives from. '
            f"Produced by attest {tool} on {when}.</p>",
            _answer(rec),
            _facts(rec),
            _ranking(rec),
            _dogs(dogs),
            f"<footer>attest {tool} · report generated {when}</footer>",
            "</main></body></html>\n",
        )
    )

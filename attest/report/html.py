"""A single self-contained HTML report for readers who are not engineers.

Everything the page needs is inline: CSS in a <style> element, images as
data: URIs, no scripts. Every value taken from the report dict is escaped,
because it may come from a hostile bundle; a Content-Security-Policy that
forbids scripts and remote loads is a second line of defence if an escape
were ever missed.
"""

from __future__ import annotations

import base64
import math
from html import escape
from typing import Any, Iterable, Mapping, Sequence

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MAX_ROWS = 4096  # hostile bundles could list millions of layers or files

VERDICT_TEXT: dict[str, tuple[str, str]] = {
    "match": (
        "The suspect model appears to be derived from the attested base model.",
        "Its FFN neurons are the base model's own: the lineage test finds them far more often than "
        "models with independent weights could (p-value below the significance level).",
    ),
    "no_match": (
        "The suspect model does not appear to be derived from the attested base model.",
        "The lineage test could have found the base model's FFN neurons in it and found none; "
        "shared vocabulary, data or embeddings alone are reported as findings, never as a match.",
    ),
    "inconclusive": (
        "The comparison is inconclusive.",
        "This report cannot say whether the suspect model is derived from the attested base model; "
        "see the notes below for what the lineage test lacked (for example too few shared tokens, or incompatible architectures).",
    ),
}

HEADS_MATCH_TEXT = (
    "Its attention heads are the base model's own: the lineage test's head channel finds them far more often "
    "than models with independent weights could (p-value, doubled for testing two channels, below the "
    "significance level)."
)

_CSS = """
:root { --ink:#26242a; --muted:#6c6874; --line:#e3dfd8; --paper:#faf8f4; --card:#ffffff;
        --good:#207f48; --bad:#b83c30; --warn:#b7800f; }
* { box-sizing: border-box; }
body { margin:0; background:var(--paper); color:var(--ink);
       font: 16px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 32px 24px 48px; }
h1 { font-size: 28px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 0 0 12px; }
.sub { color: var(--muted); margin: 0 0 24px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 14px; padding: 20px 24px; margin: 0 0 20px; }
.verdict { border-width: 0; color: #fff; }
.verdict.match { background: var(--good); }
.verdict.no_match { background: var(--bad); }
.verdict.inconclusive, .verdict.unknown { background: var(--warn); }
.verdict p.big { font-size: 24px; font-weight: 700; margin: 0 0 6px; }
.verdict p { margin: 0 0 4px; }
.warn { background: #fff3e0; border-color: #f0c27a; }
.dogs { display: flex; gap: 24px; flex-wrap: wrap; justify-content: center; }
figure { margin: 0; text-align: center; flex: 1 1 300px; max-width: 480px; }
figure img { width: 100%; height: auto; border-radius: 12px; border: 1px solid var(--line); }
figcaption { margin-top: 6px; font-weight: 600; }
.sheet img { width: 100%; height: auto; border-radius: 10px; border: 1px solid var(--line); }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: 6px 20px; margin: 0; }
.kv dt { color: var(--muted); }
.kv dd { margin: 0; font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { color: var(--muted); font-weight: 600; }
td.na { color: var(--muted); }
.scroll { overflow-x: auto; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; word-break: break-all; }
.ok { color: var(--good); font-weight: 700; }
.no { color: var(--bad); font-weight: 700; }
.muted { color: var(--muted); }
ul { margin: 0; padding-left: 20px; }
footer { color: var(--muted); font-size: 13px; text-align: center; margin-top: 28px; }
"""


# ---------------------------------------------------------------------------
# defensive accessors: the report may be missing keys or hold the wrong types


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _map(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def _seq(x: Any) -> Sequence[Any]:
    return x if isinstance(x, Sequence) and not isinstance(x, (str, bytes, bytearray)) else ()


def _s(x: Any, limit: int = 2000) -> str:
    """Escaped text of any value; bounded so one field cannot flood the page."""
    if x is None:
        return ""
    t = x if isinstance(x, str) else str(x)
    if len(t) > limit:
        t = t[: limit - 1] + "…"
    return escape(t, quote=True)


def _fmt(x: Any, digits: int = 3, signed: bool = False) -> str:
    v = _num(x)
    if v is None:
        return "—"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _fmt_p(x: Any) -> str:
    v = _num(x)
    if v is None:
        return "—"
    if v == 0.0:
        return "&lt; 1e-300"
    return f"{v:.2e}" if v < 1e-3 else f"{v:.4f}"


def _img(png: bytes | None, alt: str) -> str:
    if not isinstance(png, (bytes, bytearray)) or not bytes(png).startswith(_PNG_MAGIC):
        return f'<div class="muted">({escape(alt)}: no image)</div>'
    b64 = base64.b64encode(bytes(png)).decode("ascii")
    return f'<img alt="{escape(alt, quote=True)}" src="data:image/png;base64,{b64}">'


def _ci(report: Mapping[str, Any]) -> tuple[float, float] | None:
    ci = _seq(report.get("ci"))
    if len(ci) == 2:
        lo, hi = _num(ci[0]), _num(ci[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


# ---------------------------------------------------------------------------
# sections


def _verdict(report: Mapping[str, Any]) -> str:
    v = report.get("verdict")
    key = v if isinstance(v, str) and v in VERDICT_TEXT else "unknown"
    if key == "unknown":
        big, small = "No verdict was recorded.", "The report does not say whether the models match."
    else:
        big, small = VERDICT_TEXT[key]
    lin = _map(report.get("lineage"))
    heads = _map(lin.get("heads"))
    h_p, f_p = _num(heads.get("p_value")), _num(lin.get("p_ffn"))
    if key == "match" and heads.get("joined") is True and h_p is not None and f_p is not None and h_p <= f_p:
        small = HEADS_MATCH_TEXT  # the match rests on the attention heads, not the FFN neurons
    parts = [f'<section class="verdict {key}"><p class="big">{escape(big)}</p><p>{escape(small)}</p>']
    score, ci, thr = _num(report.get("score")), _ci(report), _num(report.get("threshold"))
    if score is not None:
        line = f"Similarity score {score:.3f}"
        if ci is not None:
            line += f" (95% confidence interval {ci[0]:.3f} to {ci[1]:.3f})"
        if thr is not None:
            line += f"; the decision threshold is {thr:.3f}"
        parts.append(f"<p>{escape(line)}.</p>")
    parts.append("</section>")
    sig = _map(report.get("signature"))
    if sig.get("valid") is False:
        parts.append(
            '<section class="warn"><strong>Warning:</strong> the attestation\'s signature did not verify, '
            "so the base model's fingerprint cannot be trusted to come from its publisher.</section>"
        )
    elif sig.get("valid") is not True:
        parts.append(
            '<section class="warn"><strong>Note:</strong> this report does not record a verified signature, '
            "so it does not show who published the base model's fingerprint.</section>"
        )
    return "".join(parts)


def _dogs(base_png: bytes, suspect_png: bytes, note: Any = None) -> str:
    dogs_note = f'<p class="muted"><strong>Partial coverage:</strong> {_s(note, 500)}.</p>' if note else ""
    return (
        "<section><h2>The two dogs</h2>"
        '<p class="muted">Each model\'s fingerprint is drawn as a dog. A model derived from the base '
        "(fine-tuned, quantised, re-exported) draws the same-looking dog; an unrelated model draws a clearly different one. "
        "The dogs are a visual aid: the verdict rests on the numbers below.</p>"
        f"{dogs_note}"
        '<div class="dogs">'
        f"<figure>{_img(base_png, 'Base model dog')}<figcaption>Base model (attested)</figcaption></figure>"
        f"<figure>{_img(suspect_png, 'Suspect model dog')}<figcaption>Suspect model</figcaption></figure>"
        "</div></section>"
    )


def _lineage_rows(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The z and p a reader sees: the lineage test's, or the score's for a bundle without a payload."""
    lin = _map(report.get("lineage"))
    if not lin:
        return [
            ("z-score of the similarity against unrelated models", _fmt(report.get("z"), 2)),
            ("p-value (similarity score alone: no lineage test)", _fmt_p(report.get("p_value"))),
        ]
    agree = [_num(_map(x).get("agreement")) for x in _seq(lin.get("layers"))[:_MAX_ROWS]]
    per_layer = " ".join(f"{a:.2f}" for a in agree if a is not None) or "—"
    rows = [
        ("Lineage test: shared FFN neurons per layer", escape(per_layer)),
        ("Lineage p-value (chance of this agreement without shared weights)", _fmt_p(report.get("p_value"))),
        ("Lineage z-score", _fmt(report.get("z"), 2)),
        ("Significance level α", _fmt_p(lin.get("alpha"))),
    ]
    heads = _map(lin.get("heads"))
    if heads:
        h_agree = [_num(_map(x).get("agreement")) for x in _seq(heads.get("layers"))[:_MAX_ROWS]]
        h_per = " ".join(f"{a:.2f}" for a in h_agree if a is not None) or "—"
        role = "in the verdict" if heads.get("joined") is True else "a finding only (too few heads for power)"
        rows.append(
            (
                "Attention-head channel: shared heads per layer",
                f"{escape(h_per)}; p {_fmt_p(heads.get('p_value'))}; {role}",
            )
        )
    return rows


def _scores(report: Mapping[str, Any]) -> str:
    ci = _ci(report)
    cov = _num(report.get("coverage"))
    rows = [
        ("Aggregate similarity", _fmt(report.get("score"))),
        ("95% confidence interval", f"{ci[0]:.3f} to {ci[1]:.3f}" if ci else "—"),
        ("Decision threshold", _fmt(report.get("threshold"))),
        *_lineage_rows(report),
        ("Vocabulary coverage", f"{cov * 100:.1f}%" if cov is not None else "—"),
        ("Method", _s(report.get("method"), 200) or "—"),
    ]
    kv = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<section><h2>Scores</h2><dl class="kv">{kv}</dl>{_layer_table(report)}</section>'


def _cell_style(v: float) -> str:
    # blue for agreement, red for disagreement, white near zero
    a = min(1.0, abs(v))
    if v >= 0:
        r, g, b = int(255 - 75 * a), int(255 - 40 * a), 255
    else:
        r, g, b = 255, int(255 - 75 * a), int(255 - 80 * a)
    return f' style="background:rgb({r},{g},{b})"'


def _layer_table(report: Mapping[str, Any]) -> str:
    layers = _seq(report.get("layers"))
    if not layers:
        return '<p class="muted">No per-layer scores were recorded.</p>'
    terms: list[str] = []
    for layer in layers[:_MAX_ROWS]:
        for t in _map(_map(layer).get("terms")):
            if isinstance(t, str) and t not in terms and len(terms) < 32:
                terms.append(t)
    head = "<tr><th>Layer (base → suspect)</th>" + "".join(f"<th>{_s(t, 40)}</th>" for t in terms) + "</tr>"
    body = []
    for layer in layers[:_MAX_ROWS]:
        lm = _map(layer)
        a, b = lm.get("a"), lm.get("b")
        name = f"{_s(a, 12)} → {_s(b, 12)}" if a is not None or b is not None else "?"
        cells = []
        tm = _map(lm.get("terms"))
        for t in terms:
            v = _num(tm.get(t))
            cells.append(f"<td{_cell_style(v)}>{v:+.3f}</td>" if v is not None else '<td class="na">—</td>')
        body.append(f"<tr><td>{name}</td>{''.join(cells)}</tr>")
    more = ""
    if len(layers) > _MAX_ROWS:
        more = f'<p class="muted">{len(layers) - _MAX_ROWS} more layers not shown.</p>'
    return (
        '<h2 style="margin-top:20px">Similarity per layer and term</h2>'
        '<p class="muted">1.0 means identical invariants, 0 means unrelated.</p>'
        f'<div class="scroll"><table>{head}{"".join(body)}</table></div>{more}'
    )


def _signature(report: Mapping[str, Any]) -> str:
    sig = _map(report.get("signature"))
    if not sig:
        return '<section><h2>Signature</h2><p class="muted">No signature information was recorded.</p></section>'
    valid = sig.get("valid")
    if valid is True:
        v = '<span class="ok">valid</span>'
    elif valid is False:
        v = '<span class="no">NOT valid</span>'
    else:
        v = '<span class="muted">unknown</span>'
    rows = [
        ("Signature", v),
        ("Signed by (trust store)", _s(sig.get("trusted_identity"), 500) or "—"),
        (
            "Issuer claimed in the bundle",
            (_s(sig.get("issuer"), 500) or "—")
            + (
                ""
                if sig.get("issuer_matches_identity", True)
                else ' <span class="no">does not match the trusted identity: only the trusted identity is verified</span>'
            ),
        ),
        ("Subject (model name)", _s(sig.get("subject"), 500) or "—"),
        ("Key id", f'<span class="mono">{_s(sig.get("kid"), 200)}</span>' if sig.get("kid") is not None else "—"),
    ]
    kv = "".join(f"<dt>{k}</dt><dd>{val}</dd>" for k, val in rows)
    return f'<section><h2>Signature</h2><dl class="kv">{kv}</dl></section>'


def _files(title: str, subj: Mapping[str, Any]) -> str:
    files = _seq(subj.get("files"))
    root = subj.get("root")
    out = [f"<h3>{escape(title)}</h3>"]
    out.append(
        f'<p>Root digest: <span class="mono">{_s(root, 200)}</span></p>'
        if root is not None
        else '<p class="muted">No root digest.</p>'
    )
    if files:
        rows = []
        for f in files[:_MAX_ROWS]:
            fm = _map(f)
            rows.append(f'<tr><td>{_s(fm.get("name"), 300)}</td><td class="mono">{_s(fm.get("sha256"), 200)}</td></tr>')
        out.append(f'<div class="scroll"><table><tr><th>File</th><th>SHA-256</th></tr>{"".join(rows)}</table></div>')
        if len(files) > _MAX_ROWS:
            out.append(f'<p class="muted">{len(files) - _MAX_ROWS} more files not shown.</p>')
    return "".join(out)


def _subjects(report: Mapping[str, Any]) -> str:
    subj = _map(report.get("subject"))
    if not subj:
        return '<section><h2>Model files</h2><p class="muted">No file digests were recorded.</p></section>'
    return (
        "<section><h2>Model files</h2>"
        '<p class="muted">SHA-256 digests identify the exact weight files that were compared.</p>'
        f"{_files('Base model', _map(subj.get('base')))}{_files('Suspect model', _map(subj.get('suspect')))}</section>"
    )


def _notes(report: Mapping[str, Any]) -> str:
    notes = [n for n in _seq(report.get("notes"))[:200] if n is not None]
    if not notes:
        return ""
    items = "".join(f"<li>{_s(n, 2000)}</li>" for n in notes)
    return f"<section><h2>Notes</h2><ul>{items}</ul></section>"


_HOW_TO = """<section><h2>How to read this report</h2><ul>
<li><strong>What was compared.</strong> The publisher of the base model signed a fingerprint of its weights. The
suspect model's weights were fingerprinted the same way on this machine and compared with it.</li>
<li><strong>The similarity score</strong> runs from about 0 (unrelated models) to 1 (the same weights). Fine-tuning,
quantisation or re-packaging a model lowers the score only a little; models trained independently score near 0.</li>
<li><strong>The confidence interval</strong> is the range the score is expected to lie in, given that only a sample
of the fingerprint was compared. A verdict is firm when the whole interval is on one side of the threshold.</li>
<li><strong>The z-score and p-value</strong> say how unusual the score would be for two unrelated models. A tiny
p-value means an unrelated model would almost never score this high.</li>
<li><strong>Coverage</strong> is the share of the fingerprint's vocabulary that the suspect model also has. Low
coverage makes the comparison weaker and can make it inconclusive.</li>
<li><strong>The signature</strong> shows that the base fingerprint was signed by the key this verifier's trust store
names under "Signed by", and has not been altered since. The issuer name inside the bundle is the publisher's own
claim; only the trust-store name is verified. If the signature is not valid, do not rely on this report.</li>
<li><strong>The policy</strong> is the verifier's own (the calibrated one shipped with attest unless another was given);
a policy recorded in the bundle is shown in the notes but never applied.</li>
<li><strong>The dogs</strong> are drawn from the fingerprints: derived models give look-alike dogs. They help you see the
result at a glance but are not evidence on their own.</li>
</ul></section>"""


def render_report(
    report: Mapping[str, Any], base_png: bytes, suspect_png: bytes, sheet_png: bytes | None = None
) -> str:
    """The whole report as one HTML document (a str)."""
    rep = _map(report)
    title = rep.get("title")
    title_s = _s(title, 200) if isinstance(title, str) and title else "Model provenance report"
    tool = _s(rep.get("tool_version"), 100) or "unknown"
    when = _s(rep.get("time"), 100) or "unknown"
    sheet = ""
    if sheet_png is not None:
        sheet = f'<section class="sheet"><h2>Comparison sheet</h2>{_img(sheet_png, "Comparison sheet")}</section>'
    parts: Iterable[str] = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{title_s}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{title_s}</h1>",
        f'<p class="sub">Produced by attest {tool} on {when}.</p>',
        _verdict(rep),
        _dogs(base_png, suspect_png, report.get("dogs")),
        _scores(rep),
        sheet,
        _signature(rep),
        _subjects(rep),
        _notes(rep),
        _HOW_TO,
        f"<footer>attest {tool} · report generated {when}</footer>",
        "</main></body></html>\n",
    )
    return "".join(parts)

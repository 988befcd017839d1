"""Human-readable reports (HTML) of a verification."""

from attest.report.html import render_report

__all__ = ["render_report"]

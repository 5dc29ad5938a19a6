"""Markdown and LaTeX (booktabs) renderings of a display table, through pandas.

A *display table* is a DataFrame of text cells: leading key columns (left-aligned, a
block's keys repeated on each row) and value columns (right-aligned). Markdown goes
through ``DataFrame.to_markdown`` (the ``tabulate`` package), LaTeX through
``Styler.to_latex`` with booktabs rules; only the rules between blocks are added here.
"""

from __future__ import annotations

import pandas as pd


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (``_``, ``%``, ``&``, ``#``, ``$``, braces, ``~``, ``^``, ``\\``)."""
    out = []
    for ch in str(text):
        if ch == "\\":
            out.append(r"\textbackslash{}")
        elif ch in "&%$#_{}":
            out.append("\\" + ch)
        elif ch == "~":
            out.append(r"\textasciitilde{}")
        elif ch == "^":
            out.append(r"\textasciicircum{}")
        else:
            out.append(ch)
    return "".join(out)


def markdown_table(frame: pd.DataFrame, n_keys: int) -> str:
    """A pipe table: the first ``n_keys`` columns left-aligned, the others right-aligned."""
    if frame.empty:
        return "(no rows)\n"
    shown = frame.map(lambda v: str(v).replace("|", "\\|"))
    shown.columns = [str(c).replace("|", "\\|") for c in frame.columns]
    align = ["left"] * n_keys + ["right"] * (frame.shape[1] - n_keys)
    return shown.to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True) + "\n"


def markdown_document(title: str, notes: list[str], frame: pd.DataFrame, n_keys: int) -> str:
    """``# title``, one bullet per note, then :func:`markdown_table`."""
    lines = [f"# {title}", ""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    return "\n".join(lines) + "\n" + markdown_table(frame, n_keys)


def latex_tabular(frame: pd.DataFrame, block_keys: list[str], n_keys: int, comment: str) -> str:
    """A booktabs ``tabular`` of ``frame`` whose cells are LaTeX already (headers are escaped here).

    Rows whose ``block_keys`` equal the previous row's print those keys once, and a
    ``\\midrule`` separates blocks.
    """
    starts = _block_starts(frame, block_keys)
    shown = frame.copy()
    for col in block_keys:
        shown[col] = [v if start else "" for v, start in zip(frame[col], starts)]
    shown.columns = [latex_escape(c) for c in frame.columns]
    body = shown.style.hide(axis="index").to_latex(
        hrules=True, column_format="l" * n_keys + "r" * (frame.shape[1] - n_keys))
    lines = body.splitlines()
    first_row = lines.index("\\midrule") + 1
    out = lines[:first_row]
    for i, line in enumerate(lines[first_row:first_row + len(frame)]):
        if i and starts[i]:
            out.append("\\midrule")
        out.append(line)
    out += lines[first_row + len(frame):]
    return f"% {comment}; needs \\usepackage{{booktabs}}\n" + "\n".join(out) + "\n"


def _block_starts(frame: pd.DataFrame, block_keys: list[str]) -> list[bool]:
    if not block_keys:
        return [i == 0 for i in range(len(frame))]
    keys = list(frame[block_keys].itertuples(index=False, name=None))
    return [i == 0 or keys[i] != keys[i - 1] for i in range(len(keys))]


_HTML_STYLE = ("<style>body{font-family:sans-serif;font-size:14px} table{border-collapse:collapse} "
               "th,td{padding:2px 8px;border-bottom:1px solid #ccc} td.num{text-align:right}</style>")


def html_document(title: str, notes: list[str], frame: pd.DataFrame, n_keys: int) -> str:
    """A standalone HTML page (``DataFrame.to_html``) of a display table whose cells use Markdown
    bold (``**x**``): for the Snakemake report, which shows HTML files as pages."""
    import html
    import re

    body = frame.to_html(index=False, escape=True, border=0)
    body = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", body)
    body = _right_align(body, n_keys)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"{_HTML_STYLE}</head><body><h1>{html.escape(title)}</h1><ul>{items}</ul>{body}</body></html>\n")


def _right_align(table_html: str, n_keys: int) -> str:
    """Mark every value cell (column >= n_keys) of each row with class ``num``."""
    import re

    def row(match: re.Match) -> str:
        cells = match.group(0).split("<td>")
        return cells[0] + "".join(("<td class=\"num\">" if i >= n_keys else "<td>") + c
                                  for i, c in enumerate(cells[1:]))
    return re.sub(r"<tr>.*?</tr>", row, table_html, flags=re.S)

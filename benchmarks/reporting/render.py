"""LaTeX (booktabs) and Markdown renderings of a :class:`benchmarks.reporting.table.Table`."""
from __future__ import annotations

import dataclasses
import math

import pandas as pd

from benchmarks.reporting.columns import Column, _decimals, _number
from benchmarks.reporting.table import REASON_CHARS, REFERENCE_SOURCE, Cell, Table

# ----------------------------------------------------------------------------- formatting

def _params(x: float) -> str:
    """A parameter count as 211k / 5.20M."""
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.0f}k"
    return str(int(x))


def _cell_text(cell: Cell, col: Column, style: str) -> str:
    """mean ± the cell's half-width (none for one seed without a spread of its own), a dash when
    missing, bold when best."""
    if cell.mean is None:
        return "--" if style == "tex" else "–"
    if col.key == "params":
        return _params(cell.mean)
    mean = cell.mean * 10.0**col.shift
    s = _number(mean, col.integer, style)
    if cell.half is not None:
        std = cell.half * 10.0**col.shift
        if abs(mean) < 1e-3 and mean != 0:
            sd = _number(std, False, style) if std else "0"
        else:
            places = (1 if std else 0) if col.integer else _decimals(mean)
            if std and round(std, places) == 0:  # a small spread (KID's over subsets) keeps one digit
                places = min(-math.floor(math.log10(abs(std))), 8)
            sd = f"{std:.{places}f}"
        # LaTeX: the spread in a smaller font keeps a 7-column table near the text width
        s += rf" {{\scriptsize$\pm${sd}}}" if style == "tex" else f" ± {sd}"
    if cell.near:  # a Welch t-test cannot tell it from the bold mean
        s = (r"$\approx$" if style == "tex" else "≈") + s
    if cell.bold:
        s = rf"\textbf{{{s}}}" if style == "tex" else f"**{s}**"
    return s


def row_name(row) -> str:
    """A row's name with what a reader must see beside it: a collapsed generator, a published
    figure's differing protocol (as plain text; each renderer escapes it)."""
    name = row.name + (" (collapsed)" if row.collapsed else "")
    return name + (f" ({row.protocol})" if row.protocol else "")


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
                "|": r"\textbar{}", "γ": r"$\gamma$", "β": r"$\beta$", "σ": r"$\sigma$",
                "μ": r"$\mu$", "α": r"$\alpha$", "λ": r"$\lambda$", "κ": r"$\kappa$",
                "±": r"$\pm$", "×": r"$\times$", "↓": r"$\downarrow$", "↑": r"$\uparrow$",
                "†": r"$^\dagger$", "‡": r"$^\ddagger$", "≤": r"$\le$", "≥": r"$\ge$", "–": "--", "—": "---", "−": "$-$",
                "é": r"\'e", "→": r"$\to$"}


def tex_escape(text: str) -> str:
    """Text safe inside a LaTeX document with the default (OT1/UTF-8) setup: specials escaped,
    the few non-ASCII characters our captions use mapped to commands, others replaced by '?'
    (pdflatex stops on an unknown Unicode character)."""
    out = []
    for ch in str(text):
        if ch in _TEX_SPECIAL:
            out.append(_TEX_SPECIAL[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def _cut(text: str, n: int = REASON_CHARS) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _headers(table: Table, style: str) -> list[str]:
    """Column headers: name, then metric / unit, scale and direction (two lines in LaTeX, where
    the headers would otherwise set the table's width)."""
    arrow = {"lower": "↓", "higher": "↑", None: ""}
    sup = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
    out = ["Model"]
    for c in table.columns:
        if style == "tex":
            scale = rf"$\times10^{{-{c.shift}}}$" if c.shift else ""
            second = " ".join(x for x in (tex_escape(c.unit), scale, tex_escape(arrow[c.better])) if x)
            out.append(rf"\begin{{tabular}}[b]{{@{{}}r@{{}}}}{tex_escape(c.header)}\\{second}\end{{tabular}}"
                       if second else tex_escape(c.header))
        else:
            scale = f"×10⁻{str(c.shift).translate(sup)}" if c.shift else ""
            out.append(" ".join(x for x in (c.header, c.unit, scale, arrow[c.better]) if x))
    return out


def _tabular(table: Table) -> str:
    r"""The booktabs tabular of ``table``, set by pandas' ``Styler.to_latex`` (jinja2 templates):
    a frame of cell strings (already LaTeX: numbers from _cell_text, names through tex_escape,
    so Styler's own escaping stays off; it would not map the Greek letters and arrows anyway),
    the row names as the first column with the index hidden, bold from the Table's ``cell.bold``
    flags through Styler's ``textbf: --rwrap;`` property, hrules for \toprule/\midrule/\bottomrule.

    Styler has no notion of two things of ours. A failed or interrupted label's row puts
    ``\emph{status}`` in its first metric cell and leaves the rest empty (as table.md does).
    The heading of the published reference rows (a \midrule and a \multicolumn line) is
    inserted into Styler's output before the first reference row: Styler writes one table row
    per line, between its \midrule and \bottomrule, in the frame's order.
    """
    ncol = len(table.columns) + 1
    texts, bold = [], []
    for row in table.rows:
        name = tex_escape(row_name(row)) + "".join(rf"$^{{{m}}}$" for m in row.notes)
        if row.kind == "reference":
            name = r"\quad " + name
        if row.kind == "incomplete":
            cells = [_cell_text(row.cells["params"], table.columns[0], "tex"),
                     rf"\emph{{{tex_escape(row.status)}}}"] + [""] * (ncol - 3)
            flags = [False] * (ncol - 1)
        else:
            plain = [dataclasses.replace(row.cells[c.key], bold=False) if c.key in row.cells else None
                     for c in table.columns]
            cells = [_cell_text(cell, c, "tex") if cell is not None else ""
                     for cell, c in zip(plain, table.columns)]
            flags = [c.key in row.cells and row.cells[c.key].bold for c in table.columns]
        # a line break inside a cell (any of str.splitlines') is a space to LaTeX; joining keeps
        # one table row per line
        texts.append([" ".join(t.splitlines()) for t in [name] + cells])
        bold.append([False] + flags)
    frame = pd.DataFrame(texts, columns=range(ncol))
    css = pd.DataFrame([["textbf: --rwrap;" if b else "" for b in r] for r in bold], columns=range(ncol))
    heads = _headers(table, "tex")
    styler = (frame.style.hide(axis="index")
              .format_index(lambda i: heads[i], axis="columns")  # a callable: headers hold braces
              .apply(lambda _: css, axis=None))
    lines = styler.to_latex(hrules=True, column_format="l" + "r" * (ncol - 1)).splitlines()
    first = lines.index(r"\midrule") + 1  # the body: one line per table row
    if lines[first + len(table.rows)] != r"\bottomrule":
        raise RuntimeError("Styler.to_latex did not write one line per table row")
    ref = next((i for i, r in enumerate(table.rows) if r.kind == "reference"), None)
    if ref is not None:
        source = rf"\textit{{{tex_escape(REFERENCE_SOURCE)}}}"
        lines[first + ref:first + ref] = [r"\midrule", rf"\multicolumn{{{ncol}}}{{l}}{{{source}}} \\"]
    return "\n".join(lines)


def render_latex(table: Table) -> str:
    """A booktabs ``table`` float (caption, label tab:<suite>, notes under the tabular); needs
    only \\usepackage{booktabs}. One table row per source line.

    The tabular comes from :func:`_tabular` (pandas' Styler); the float around it is ours,
    because Styler's ``environment='table'`` has no place for the notes paragraph under the
    tabular (nor for the generated-by comment)."""
    lines = [f"% generated by benchmarks.report from {table.n_records} run records; do not edit",
             r"\begin{table}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{4pt}",
             r"\caption{" + tex_escape(" ".join(table.caption)) + "}",
             r"\label{tab:" + "".join(ch if ch.isalnum() or ch in "-_:." else "-" for ch in table.name) + "}",
             _tabular(table)]
    if table.notes:
        notes = []
        for m, text in table.numbered_notes():
            lead = {"†": r"$^\dagger$~", "‡": r"$^\ddagger$~"}.get(m, f"{m}.~" if m.isdigit() else rf"$^{{{m}}}$~")
            notes.append(lead + tex_escape(_cut(text, 900 if m.isdigit() or m in ("†", "‡") else REASON_CHARS)))
        lines += [r"\par\smallskip", r"\parbox{\linewidth}{\footnotesize\raggedright",
                  "\\par\n".join(notes) + "}"]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|")


def render_markdown(table: Table) -> str:
    """The same table in GitHub Markdown: caption above, notes (with full reasons) below."""
    heads = _headers(table, "md")
    lines = [f"**{_md_escape(table.name)}.** " + _md_escape(" ".join(table.caption)), "",
             "| " + " | ".join(map(_md_escape, heads)) + " |",
             "|" + "|".join([":--"] + ["--:"] * len(table.columns)) + "|"]
    for row in table.rows:
        name = _md_escape(row_name(row)) + "".join(f" [{m}]" for m in row.notes)
        if row.kind == "reference" and row is next(r for r in table.rows if r.kind == "reference"):
            # the published rows' own block: a heading row, as table.tex's \multicolumn line
            lines.append(f"| *{_md_escape(REFERENCE_SOURCE)}* |" + " |" * len(table.columns))
        if row.kind == "reference":
            name = f"{name} (published)"
        if row.kind == "incomplete":
            cells = [_cell_text(row.cells["params"], table.columns[0], "md"), f"**{row.status}**"]
            cells += [""] * (len(table.columns) - 2)
        else:
            cells = [_cell_text(row.cells[c.key], c, "md") if c.key in row.cells else ""
                     for c in table.columns]
        lines.append("| " + " | ".join([name] + [_md_escape(c) for c in cells]) + " |")
    lines.append("")
    for m, text in table.numbered_notes():
        lead = f"{m}." if m.isdigit() else m if m in ("†", "‡") else f"[{m}]"
        lines.append(f"- {lead} {_md_escape(text)}")
    return "\n".join(lines) + "\n"

"""Plots for the assessment report: plain data in, inline SVG out.

Each plot has a ``*_figure`` function that draws a new
:class:`matplotlib.figure.Figure` on an Agg canvas (never pyplot, whose global
state is not thread-safe) and a ``*_svg`` function that returns it as an SVG
fragment to paste into HTML: no XML prolog, no date, element ids made from a
fixed salt and prefixed with the plot's name, so the same data always gives
the same bytes and four plots can share one page. When there is nothing to
draw, ``*_figure`` returns None and ``*_svg`` a short HTML placeholder.
``figure_png`` renders a figure as PNG, for a quick look outside a browser.

Byte counts use decimal units (kB, MB, GB, TB), as storage is sold.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from pacsmigrate.assess.model import LargeStudy

__all__ = [
    "NO_SIZES",
    "UNKNOWN_YEAR",
    "bytes_per_year_figure",
    "bytes_per_year_svg",
    "figure_png",
    "figure_svg",
    "human_bytes",
    "largest_studies_figure",
    "largest_studies_svg",
    "ordered_years",
    "placeholder",
    "study_size_figure",
    "study_size_svg",
    "studies_per_year_figure",
    "studies_per_year_svg",
]

UNKNOWN_YEAR = "unknown"
NO_MODALITY = "(none)"
OTHER_MODALITIES = "other"
MAX_MODALITIES = 8  # stacked in their own colour; the rest are summed as "other"
MAX_YEAR_GAP_FILL = 60  # fill missing years with empty bars across at most this span
SIZE = (7.0, 3.0)  # inches
DPI = 100
_SALT = "pacsmigrate-assess"
_SAVE_LOCK = threading.Lock()  # rcParams (the id salt) are global: one save at a time
_COLOURS = (  # matplotlib's "tab10", minus its grey (kept for "other")
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#bcbd22", "#17becf",
)  # fmt: skip
_GREY = "#9aa5b1"
_BAR = "#7b93db"
_TITLE = 11
_LABEL = 9
_TICK = 8
_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(url\(#|href="#)([^)"]+)')

NO_SIZES = "No study sizes known: the source did not report them."


# ---------------------------------------------------------------- helpers


def human_bytes(count: float) -> str:
    """``1234567890`` -> ``"1.2 GB"`` (decimal units)."""
    size, unit = float(count), _DECIMAL_UNITS[0]
    for bigger in _DECIMAL_UNITS[1:]:
        if abs(size) < 1000:
            break
        size, unit = size / 1000, bigger
    return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"


def _axis_bytes(value: float, _pos: int | None = None) -> str:
    """Tick label for a byte axis: ``1 MB``, ``250 GB``."""
    unit, scale = _byte_unit(abs(value))
    return f"{value / scale:.3g} {unit}"


def _byte_unit(largest: float) -> tuple[str, float]:
    """The decimal unit (and its size) that shows ``largest`` as 1 to 999."""
    scale, unit = 1.0, _DECIMAL_UNITS[0]
    for bigger in _DECIMAL_UNITS[1:]:
        if largest < scale * 1000:
            break
        scale, unit = scale * 1000, bigger
    return unit, scale


def ordered_years(years: Iterable[str]) -> list[str]:
    """Numeric years ascending, then any other label, then ``"unknown"`` last."""
    unique = set(years)
    numeric = sorted((y for y in unique if y.isdigit()), key=int)
    other = sorted(y for y in unique if not y.isdigit() and y != UNKNOWN_YEAR)
    return numeric + other + ([UNKNOWN_YEAR] if UNKNOWN_YEAR in unique else [])


def _year_axis(years: Iterable[str]) -> list[str]:
    """:func:`ordered_years` with missing years filled in, so a gap shows as a gap."""
    ordered = ordered_years(years)
    numeric = [int(y) for y in ordered if y.isdigit()]
    if not numeric or max(numeric) - min(numeric) > MAX_YEAR_GAP_FILL:
        return ordered
    filled = [str(y) for y in range(min(numeric), max(numeric) + 1)]
    return filled + [y for y in ordered if not y.isdigit()]


def _axis_count(value: float, _pos: int | None = None) -> str:
    return f"{value:,.0f}"


def _instances(value: float) -> str:
    return f"{value:,.0f} instances"


def _text(value: str) -> str:
    """Data shown as a label: a ``$`` must not start mathtext."""
    return value.replace("$", r"\$")


def placeholder(message: str) -> str:
    """What a plot function returns when there is nothing to draw (HTML)."""
    escaped = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f'<p class="empty plot-empty">{escaped}</p>'


def _new_figure(size: tuple[float, float] = SIZE) -> tuple[Figure, Axes]:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.tick_params(labelsize=_TICK)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _titles(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=_TITLE, loc="left")
    ax.set_xlabel(xlabel, fontsize=_LABEL)
    ax.set_ylabel(ylabel, fontsize=_LABEL)


def _year_ticks(ax: Axes, years: Sequence[str]) -> None:
    ax.set_xticks(range(len(years)))
    many = len(years) > 12
    ax.set_xticklabels(
        [_text(y) for y in years], rotation=90 if many else 0, fontsize=7 if many else _TICK
    )
    ax.set_xlim(-0.6, len(years) - 0.4)


# ---------------------------------------------------------------- output


def figure_svg(fig: Figure, *, name: str) -> str:
    """The figure as an ``<svg>`` element; ids are prefixed with ``name``."""
    buf = io.StringIO()
    with _SAVE_LOCK:
        salt, fonttype = mpl.rcParams["svg.hashsalt"], mpl.rcParams["svg.fonttype"]
        mpl.rcParams["svg.hashsalt"], mpl.rcParams["svg.fonttype"] = _SALT, "path"
        try:
            fig.savefig(buf, format="svg", metadata={"Date": None})
        finally:
            mpl.rcParams["svg.hashsalt"], mpl.rcParams["svg.fonttype"] = salt, fonttype
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = _ID.sub(lambda m: f'id="{name}-{m.group(1)}"', text)
    return _REF.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}", text).strip() + "\n"


def figure_png(fig: Figure, *, dpi: int = 120) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _svg_or(fig: Figure | None, name: str, empty: str) -> str:
    return placeholder(empty) if fig is None else figure_svg(fig, name=name)


# ---------------------------------------------------------------- studies per year


def _modality_order(per_year: Mapping[str, Mapping[str, int]]) -> list[str]:
    totals: dict[str, int] = {}
    for counts in per_year.values():
        for modality, count in counts.items():
            key = modality.strip() or NO_MODALITY
            totals[key] = totals.get(key, 0) + count
    return sorted(totals, key=lambda m: (-totals[m], m))


def _stack_rows(
    per_year: Mapping[str, Mapping[str, int]], years: Sequence[str]
) -> dict[str, list[int]]:
    """modality (top ones, then "other") -> studies for each year in ``years``."""
    order = _modality_order(per_year)
    shown = order if len(order) <= MAX_MODALITIES else order[: MAX_MODALITIES - 1]
    rows = {m: [0] * len(years) for m in shown}
    if len(shown) < len(order):
        rows[OTHER_MODALITIES] = [0] * len(years)
    for index, year in enumerate(years):
        for modality, count in per_year.get(year, {}).items():
            key = modality.strip() or NO_MODALITY
            rows[key if key in rows else OTHER_MODALITIES][index] += count
    return rows


def studies_per_year_figure(per_year: Mapping[str, Mapping[str, int]]) -> Figure | None:
    """Stacked bars: studies per study year, one colour per modality."""
    if not any(sum(counts.values()) for counts in per_year.values()):
        return None
    years = _year_axis(per_year)
    fig, ax = _new_figure()
    bottom = np.zeros(len(years))
    for index, (modality, counts) in enumerate(_stack_rows(per_year, years).items()):
        colour = _GREY if modality == OTHER_MODALITIES else _COLOURS[index % len(_COLOURS)]
        values = np.array(counts, dtype=float)
        ax.bar(range(len(years)), values, 0.8, bottom=bottom, color=colour, label=_text(modality))
        bottom += values
    _year_ticks(ax, years)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(_axis_count))
    _titles(ax, "Studies per year, by modality", "Study year", "Studies")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles[::-1], labels[::-1],  # top of the legend = top of the stack
        title="Modality", fontsize=_TICK, title_fontsize=_TICK, frameon=False,
        loc="upper left", bbox_to_anchor=(1.0, 1.0),
    )  # fmt: skip
    return fig


def studies_per_year_svg(per_year: Mapping[str, Mapping[str, int]]) -> str:
    return _svg_or(studies_per_year_figure(per_year), "studies-per-year", "No studies.")


# ---------------------------------------------------------------- bytes per year


def bytes_per_year_figure(per_year: Mapping[str, int]) -> Figure | None:
    """Bars: known bytes per study year, on a GB or TB axis."""
    if not any(per_year.values()):
        return None
    years = _year_axis(per_year)
    unit, scale = _byte_unit(max(per_year.values()))
    fig, ax = _new_figure()
    values = [per_year.get(year, 0) / scale for year in years]
    ax.bar(range(len(years)), values, 0.8, color=_BAR)
    _year_ticks(ax, years)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.4g}"))
    _titles(ax, "Stored size per year (studies of known size)", "Study year", f"Size ({unit})")
    return fig


def bytes_per_year_svg(per_year: Mapping[str, int]) -> str:
    return _svg_or(bytes_per_year_figure(per_year), "bytes-per-year", NO_SIZES)


# ---------------------------------------------------------------- size distribution


def _log_bins(values: Sequence[int], count: int = 30) -> Any:
    low, high = float(min(values)), float(max(values))
    if low == high:
        low, high = max(low / 2, 0.5), high * 2
    return np.logspace(np.log10(low), np.log10(high), count + 1)


def study_size_figure(sizes: Sequence[int], instance_counts: Sequence[int]) -> Figure | None:
    """Histogram (log bins) of study sizes in bytes, else of instances per study."""
    by_size = bool(sizes) and any(sizes)
    values = sizes if by_size else instance_counts
    positive = [v for v in values if v > 0]
    if not positive:
        return None
    fig, ax = _new_figure()
    ax.hist(positive, bins=_log_bins(positive), color=_BAR, edgecolor="white", linewidth=0.5)
    ax.set_xscale("log")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if by_size:
        ax.xaxis.set_major_formatter(FuncFormatter(_axis_bytes))
        title = f"Study size distribution ({len(positive):,} studies of known size)"
        _titles(ax, title, "Study size (log scale)", "Studies")
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(_axis_count))
        title = "Instances per study (study sizes unknown)"
        _titles(ax, title, "Instances per study (log scale)", "Studies")
    _note_left_out(ax, len(values) - len(positive), "bytes" if by_size else "instances")
    return fig


def _note_left_out(ax: Axes, count: int, what: str) -> None:
    if count:
        note = f"{count:,} studies with 0 {what} not shown"
        ax.text(0.99, 0.97, note, transform=ax.transAxes, ha="right", va="top", fontsize=_TICK)


def study_size_svg(sizes: Sequence[int], instance_counts: Sequence[int]) -> str:
    fig = study_size_figure(sizes, instance_counts)
    return _svg_or(fig, "study-size", "No studies with instances.")


# ---------------------------------------------------------------- largest studies


def _study_label(rank: int, study: LargeStudy) -> str:
    date = study.study_date
    shown = f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 else "no date"
    modalities = ", ".join(m for m in study.modalities.split("\\") if m.strip()) or NO_MODALITY
    return _text(f"{rank}. {shown}  {modalities}")


def _largest_values(studies: Sequence[LargeStudy]) -> tuple[list[float], Callable[[float], str]]:
    """Bar lengths and their label format: bytes when every size is known."""
    sizes = [s.size for s in studies]
    if all(size is not None for size in sizes):
        return [float(size or 0) for size in sizes], human_bytes
    return [float(s.instances) for s in studies], _instances


def largest_studies_figure(largest: Sequence[LargeStudy], top: int = 20) -> Figure | None:
    """Horizontal bars: the largest studies, labelled by date and modalities only."""
    studies = list(largest[:top])
    if not studies:
        return None
    values, shown = _largest_values(studies)
    fig, ax = _new_figure((SIZE[0], max(SIZE[1], 0.9 + 0.2 * len(studies))))
    bars = ax.barh(range(len(studies)), values, 0.7, color=_BAR)
    ax.set_yticks(range(len(studies)))
    ax.set_yticklabels([_study_label(i + 1, s) for i, s in enumerate(studies)], fontsize=7)
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[shown(v) for v in values], padding=3, fontsize=7)
    ax.margins(x=0.15)
    by_size = shown is human_bytes
    axis_format = _axis_bytes if by_size else _axis_count
    ax.xaxis.set_major_formatter(FuncFormatter(axis_format))
    axis = "Study size" if by_size else "Instances in the study"
    _titles(ax, f"Largest {len(studies)} studies", axis, "")
    return fig


def largest_studies_svg(largest: Sequence[LargeStudy], top: int = 20) -> str:
    return _svg_or(largest_studies_figure(largest, top), "largest-studies", "No studies.")

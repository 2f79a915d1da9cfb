"""The report of a clustering run: its plots and its blocks, rendered by the same Markdown and HTML
writers as every other report (evaluation/report.py).

Everything is read from one `ClusterContext`, filled by the clustering stage, so the report can be
tested and re-rendered without Ray.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from matplotlib.figure import Figure

from rayfit import metrics as registry
from .clustering import LABEL_METRICS, SHAPE_METRICS
from .plots import DPI, MAX_SCATTER_POINTS, _save
from .report import (Block, Bullets, Code, Heading, Image, Paragraph, Table, format_seconds, format_value, to_html,
                     to_markdown)

EMBEDDING_TITLES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
MAX_DENDROGRAM_LEAVES = 30  # merges shown below this many clusters are folded into their branch


@dataclass
class ClusterContext:
    name: str
    metric: str  # what the candidates were chosen by
    best: str  # the chosen algorithm, a key of `models`
    dataset: dict[str, Any]  # rows, features, source, labels (the label column or None)
    # algorithm -> {"params", "n_clusters", "noise_fraction", metric: value, ..., "train_time_s", "search": [...]}
    models: dict[str, dict[str, Any]]
    assigned: np.ndarray  # the best clustering's cluster per row (all rows)
    sample: np.ndarray  # the rows the embeddings show
    embeddings: dict[str, dict] = field(default_factory=dict)  # method -> {"coords" (sample rows), ...}
    labels: Optional[np.ndarray] = None  # label codes per row (-1: none), when a label column was given
    label_names: Optional[list[str]] = None
    linkage: Optional[np.ndarray] = None  # a dendrogram's merge tree, when agglomerative ran
    prep_log: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the search left out, and why
    config_yaml: str = ""
    stage_times: dict[str, float] = field(default_factory=dict)
    created: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)


# -- plots -----------------------------------------------------------------------------------------

def _scores_by_setting(ctx: ClusterContext, path: Path) -> bool:
    """Each searched algorithm's metric against its setting (k, or DBSCAN's eps)."""
    searched = {name: entry["search"] for name, entry in ctx.models.items() if len(entry.get("search", [])) > 1}
    if not searched:
        return False
    fig = Figure(figsize=(4.2 * len(searched), 3.4))
    for i, (name, search) in enumerate(searched.items(), 1):
        ax = fig.add_subplot(1, len(searched), i)
        setting = "n_clusters" if "n_clusters" in search[0]["params"] else "eps"
        xs = [s["params"][setting] for s in search]
        for metric in (ctx.metric, *(["silhouette"] if ctx.metric != "silhouette" else [])):
            ys = [np.nan if s["scores"].get(metric) is None else s["scores"][metric] for s in search]
            ax.plot(xs, ys, marker="o", label=registry.get(metric).title)
        chosen = ctx.models[name]["params"][setting]
        ax.axvline(chosen, color="#fd8d3c", linestyle="--", linewidth=1, label=f"chosen: {format_value(chosen)}")
        ax.set_xlabel("clusters (k)" if setting == "n_clusters" else "eps")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _explained_variance(ctx: ClusterContext, path: Path) -> bool:
    ratios = ctx.embeddings.get("pca", {}).get("explained_variance_ratio")
    if not ratios:
        return False
    fig = Figure(figsize=(6, 3.4))
    ax = fig.add_subplot()
    xs = np.arange(1, len(ratios) + 1)
    ax.bar(xs, ratios, color="#9ecae1", label="each component")
    ax.plot(xs, np.cumsum(ratios), color="#3182bd", marker=".", label="cumulative")
    ax.set_xlabel("principal component")
    ax.set_ylabel("share of variance")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _scatter(ax, coords: np.ndarray, colours: np.ndarray, names: Optional[list[str]] = None) -> None:
    shown = np.arange(len(coords))[:MAX_SCATTER_POINTS]
    values = np.unique(colours[shown])
    cmap = _colours(len(values))
    for i, value in enumerate(values):
        rows = shown[colours[shown] == value]
        noise = value == -1
        label = ("noise" if noise else (names[value] if names else f"cluster {value}"))
        ax.scatter(coords[rows, 0], coords[rows, 1], s=8, alpha=0.4 if noise else 0.8,
                   color="#bbbbbb" if noise else cmap[i], label=label)
    if len(values) <= 12:
        ax.legend(fontsize=7, markerscale=1.5, loc="best")


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _embedding_plot(method: str):
    def draw(ctx: ClusterContext, path: Path) -> bool:
        found = ctx.embeddings.get(method)
        if not found:
            return False
        coords = np.asarray(found["coords"])
        panels = [(f"{ctx.best} clusters", ctx.assigned[ctx.sample], None)]
        if ctx.labels is not None:
            panels.append((f"label {ctx.dataset.get('labels')}", ctx.labels[ctx.sample], ctx.label_names))
        fig = Figure(figsize=(4.6 * len(panels), 4.2))
        for i, (title, colours, names) in enumerate(panels, 1):
            ax = fig.add_subplot(1, len(panels), i)
            _scatter(ax, coords, colours, names)
            ax.set_title(f"{EMBEDDING_TITLES[method]}: {title}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        return _save(fig, path)

    return draw


def _dendrogram(ctx: ClusterContext, path: Path) -> bool:
    if ctx.linkage is None:
        return False
    from scipy.cluster.hierarchy import dendrogram

    fig = Figure(figsize=(7, 3.6))
    ax = fig.add_subplot()
    dendrogram(ctx.linkage, ax=ax, truncate_mode="lastp", p=MAX_DENDROGRAM_LEAVES, no_labels=True,
               color_threshold=None)
    ax.set_ylabel("merge distance")
    ax.set_title(f"hierarchical clustering ({ctx.models.get('agglomerative', {}).get('params', {}).get('linkage', '')} "
                 f"linkage, {MAX_DENDROGRAM_LEAVES} top branches)", fontsize=10)
    return _save(fig, path)


PLOTS = {"scores_by_setting": _scores_by_setting, "explained_variance": _explained_variance,
         "pca": _embedding_plot("pca"), "tsne": _embedding_plot("tsne"), "umap": _embedding_plot("umap"),
         "dendrogram": _dendrogram}
PLOT_TITLES = {"scores_by_setting": "Scores by setting", "explained_variance": "PCA: explained variance",
               "pca": "PCA projection", "tsne": "t-SNE embedding", "umap": "UMAP embedding",
               "dendrogram": "Dendrogram"}


def render_plots(ctx: ClusterContext, plots_dir: Path) -> dict[str, Path]:
    drawn = {}
    for name, draw in PLOTS.items():
        path = Path(plots_dir) / f"{name}.png"
        if draw(ctx, path):
            drawn[name] = path
    return drawn


# -- blocks ----------------------------------------------------------------------------------------

def _setting(params: dict) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in params.items() if k not in ("min_samples", "linkage"))


def build_report(ctx: ClusterContext, plots: dict[str, Path]) -> list[Block]:
    best = ctx.models[ctx.best]
    chosen_by = registry.get(ctx.metric)
    blocks: list[Block] = [Heading(f"rayfit report: {ctx.name}", level=1)]
    if ctx.created:
        blocks.append(Paragraph(f"Created {ctx.created}."))
    summary = (f"Best clustering: {ctx.best} ({_setting(best['params'])}), {best['n_clusters']} clusters, "
               f"chosen on {chosen_by.title} {format_value(best[ctx.metric])} ({chosen_by.direction} is better)")
    if ctx.labels is not None:
        summary += (f"; against label {ctx.dataset.get('labels')!r}: adjusted Rand {format_value(best.get('adjusted_rand'))}, "
                    f"NMI {format_value(best.get('normalized_mutual_info'))}")
    blocks.append(Paragraph(summary + "."))

    data = ctx.dataset
    blocks += [Heading("Dataset"), Bullets([f"{k}: {format_value(data[k])}" for k in ("source", "rows", "features", "labels")
                                            if data.get(k) is not None])]
    blocks += [Heading("Data preparation"), Bullets(ctx.prep_log or ["No cleaning was needed."])]

    metrics = [*SHAPE_METRICS, *(LABEL_METRICS if ctx.labels is not None else ())]
    header = ["Algorithm", "Setting", "Clusters", "Noise", *[registry.get(m).title for m in metrics], "Candidates", "Fit time"]
    rows = [[name, _setting(e["params"]), e["n_clusters"], f"{100 * e['noise_fraction']:.1f}%", *[e.get(m) for m in metrics],
             len(e.get("search", [])), format_seconds(e["train_time_s"])] for name, e in ctx.models.items()]
    blocks += [Heading("Clusterings"),
               Paragraph(f"Each algorithm's best candidate by {chosen_by.title}; silhouette and "
                         f"Calinski-Harabasz higher, Davies-Bouldin lower is better. Shape scores count "
                         f"DBSCAN's noise rows in the cluster of their nearest clustered row; a candidate with fewer than 2 clusters or more than half "
                         f"the rows as noise is not chosen."),
               Table(header, rows, highlight=list(ctx.models).index(ctx.best))]
    if ctx.notes:
        blocks.append(Bullets(ctx.notes))
    sizes = np.unique(ctx.assigned, return_counts=True)
    blocks += [Heading("Cluster sizes"),
               Table(["Cluster", "Rows", "Share"],
                     [["noise" if c == -1 else int(c), int(n), f"{100 * n / len(ctx.assigned):.1f}%"] for c, n in zip(*sizes)])]
    blocks += [Heading("Search"), *[Image(PLOT_TITLES[n], Path(plots[n])) for n in ("scores_by_setting",) if n in plots]]
    views = [n for n in ("explained_variance", "pca", "tsne", "umap", "dendrogram") if n in plots]
    if views:
        sampled = len(ctx.sample) < data.get("rows", len(ctx.sample))
        blocks += [Heading("Embeddings"),
                   Paragraph(f"2-D views of {len(ctx.sample)} rows{' (a random sample)' if sampled else ''}, "
                             f"coloured by the best clustering" + (" and by the label column." if ctx.labels is not None else "."))]
        blocks += [Image(PLOT_TITLES[n], Path(plots[n])) for n in views]
    if ctx.stage_times:
        total = sum(ctx.stage_times.values())
        blocks += [Heading("Stage timings"),
                   Table(["Stage", "Time", "Share"], [[s, format_seconds(t), f"{100 * t / total:.0f}%" if total else "–"]
                                                      for s, t in ctx.stage_times.items()]
                         + [["total", format_seconds(total), "100%"]])]
    if ctx.artifacts:
        blocks += [Heading("Artifacts"), Bullets([f"{label}: {path}" for label, path in ctx.artifacts.items()])]
    if ctx.config_yaml:
        blocks += [Heading("Resolved configuration"), Code(ctx.config_yaml, "yaml")]
    return blocks


def write_report(ctx: ClusterContext, run_dir: Path, plots: dict[str, Path]) -> None:
    from rayfit.cluster.storage import Location

    blocks = build_report(ctx, plots)
    Location.of(Path(run_dir) / "report.md").write_bytes(to_markdown(blocks, Path(run_dir)).encode("utf-8"))
    Location.of(Path(run_dir) / "report.html").write_bytes(
        to_html(blocks, f"rayfit report: {ctx.name}").encode("utf-8"))

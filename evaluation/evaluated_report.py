"""The report of `rayfit evaluate` (rayfit/judge.py): a finished run's exported models scored on new
labelled rows, beside their test scores in the run, and each input column's shift from the
training rows. Markdown and self-contained HTML, from the same blocks as the run's report."""
from __future__ import annotations

from pathlib import Path

from rayfit.cluster.storage import Location
from rayfit.data.profile import SHIFTED
from rayfit.evaluation.report import Bullets, Heading, Paragraph, Table, format_value, to_html, to_markdown
from rayfit.metrics import is_missing, names


def evaluation_blocks(document: dict) -> list:
    metric, best, task = document["primary_metric"], document["best_model"], document["task"]
    models = document["models"]
    ours = models[best]["scores"].get(metric)
    then = models[best]["run_test"].get(metric)
    blocks = [Heading(f"rayfit evaluation: {Path(str(document['run'])).name}", level=1),
              Paragraph(f"{best}, the run's model, scores {metric} {format_value(ours)} on {document['rows']:,} "
                        f"labelled rows of {document['data']} (test {metric} in the run: {format_value(then)})."
                        + _shift_sentence(document))]
    shown = names(task)
    rows = [[name, *[entry["scores"].get(m) for m in shown], entry["run_test"].get(metric)]
            for name, entry in models.items()]
    blocks += [Heading("Scores", level=2),
               Table(["Model", *shown, f"Run's test {metric}"], rows)]
    blocks += _drift(document)
    return blocks


def _shift_sentence(document: dict) -> str:
    drift = document.get("drift")
    if drift is None:
        return ""
    shifted = [column for column, entry in drift.items() if entry["shifted"]]
    if not shifted:
        return f" No input column shifted from the training rows (every PSI at most {SHIFTED})."
    return (f" {len(shifted)} input column{'s' if len(shifted) > 1 else ''} shifted from the training rows "
            f"(PSI above {SHIFTED}): {', '.join(shifted[:10])}{' ...' if len(shifted) > 10 else ''}.")


def _drift(document: dict) -> list:
    drift = document.get("drift")
    blocks = [Heading("Shift from the training rows", level=2)]
    if drift is None:
        return blocks + [Paragraph(f"Shift {document.get('drift_note', 'not measured')}.")]
    blocks.append(Paragraph(
        "The population stability index of each input column: numbers cut at their training deciles, "
        "categories counted per value, missing values a bin of their own; below 0.1 stable, 0.1-0.2 some "
        f"shift, above {SHIFTED} shifted (flagged)."))
    blocks.append(Table(["Column", "Kind", "PSI", "Shifted"],
                        [[column, entry["kind"], entry["psi"], "yes" if entry["shifted"] else ""]
                         for column, entry in drift.items()]))
    missing = [name for name, entry in document["models"].items()
               if any(is_missing(v) for v in entry["scores"].values())]
    if missing:
        blocks.append(Bullets([f"{name}: a metric is undefined on these rows (shown as –)" for name in missing]))
    return blocks


def write_evaluation_report(document: dict, directory: Path) -> None:
    blocks = evaluation_blocks(document)
    directory = Path(directory)
    Location.of(directory / "report.md").write_bytes(to_markdown(blocks, directory).encode("utf-8"))
    Location.of(directory / "report.html").write_bytes(
        to_html(blocks, f"rayfit evaluation: {Path(str(document['run'])).name}").encode("utf-8"))

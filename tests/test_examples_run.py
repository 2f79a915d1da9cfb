"""Smoke runs of the image and sequence example configs, shortened: the whole pipeline per input kind."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from browser import assert_renders_cleanly, check_in_browser
from rayfit.cli import main

EXAMPLES = Path(__file__).parent.parent / "examples"
# Three baselines, not the example's eight: each is cross-validated on the same folds, and the zoo's
# own contract (tests/test_baselines.py) covers the rest; what differs per input kind is the networks.
BASELINES = "baselines.models=[dummy,linear,random_forest]"
SHORT = {
    "digits_cnn.yaml": [BASELINES, "torch.model=cnn", "torch.epochs=3", "keras.epochs=3", "tune.num_samples=2",
                        "tune.max_t=2", "tune.grace_period=1", "evaluation.cv_networks=false",
                        # one task per network: worker groups are tested elsewhere, and cost a start each here
                        "torch.launch=task", "keras.launch=task"],
    "sequence.yaml": [BASELINES, "torch.epochs=8", "keras.epochs=8", "evaluation.cv_networks=false", "torch.launch=task",
                      "keras.launch=task", "tune.enabled=false"],  # the digits run has the search
}
NEURAL = {"digits_cnn.yaml": {"torch_cnn", "keras_cnn", "torch_tuned"},
          "sequence.yaml": {"torch_rnn", "torch_transformer", "keras_rnn"}}


@pytest.mark.parametrize("example", list(SHORT))
def test_example_runs_end_to_end(example, ray_session, tmp_path, chromium):
    argv = ["run", str(EXAMPLES / example), "--out", str(tmp_path / "run")]
    for override in SHORT[example]:
        argv += ["--set", override]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert NEURAL[example] <= set(metrics["models"])
    dummy = metrics["models"]["dummy"]["test"]["accuracy"]
    for name in NEURAL[example]:
        assert metrics["models"][name]["test"]["accuracy"] > dummy + 0.1, (name, metrics["models"][name]["test"])
    report = (tmp_path / "run" / "report.md").read_text()
    curves = report[report.index("## Learning curves"):]
    assert all(f"| {name} |" in curves for name in NEURAL[example])  # every neural model's curve
    assert (tmp_path / "run" / "plots" / "learning_curves.png").is_file()
    # its report, as a person sees it: images and sequences draw other plots than tables do
    found = check_in_browser(tmp_path / "run" / "report.html", chromium, Path(example).stem)
    assert_renders_cleanly(found, at_least_images=4)

"""AutoGluon's side of B10 (bench/b10_small_tables.py), run by the benchmark in AutoGluon's own
virtual environment: fit `medium_quality` on a training file, score a test file, print one JSON
line. The whole process is timed by the caller, as rayfit's is.

    python bench/autogluon_fit.py TRAIN.csv TEST.csv TARGET METRIC OUT_DIR
"""
import json
import sys

import pandas as pd
from autogluon.tabular import TabularPredictor


def main(train: str, test: str, target: str, metric: str, out: str) -> None:
    train_frame, test_frame = pd.read_csv(train), pd.read_csv(test)
    predictor = TabularPredictor(label=target, eval_metric=metric, path=out, verbosity=0)
    predictor.fit(train_frame, presets="medium_quality")
    score = predictor.evaluate(test_frame, silent=True)[metric]  # higher is better for all three metrics
    print(json.dumps({"score": float(score), "best_model": predictor.model_best}))


if __name__ == "__main__":
    main(*sys.argv[1:6])

"""The stages of a run, each a module, in the order rayfit/pipeline.py runs them.

prepare.py        load, clean and split the data; every check that needs no Ray
open_run.py       a new run directory, or the one `rayfit resume` continues (finished stages loaded)
ray_session.py    start or join Ray (and stop it); the watchdog around the training stages
preflight.py      every stage's resources checked against the cluster; the networks' worker plan
training_data.py  the splits put where every Ray task, worker and trial reads them
train.py          baselines and networks, side by side where they can be
baselines.py      each scikit-learn baseline as one Ray task
networks.py       each network as one Ray task or a Ray Train worker group
searches.py       each Ray Tune search; its tuned model joins the evaluation
evaluate.py       every model on the test split, the best chosen on validation; metrics.json
report.py         plots, report.html and report.md
state.py          what the stages share: RunState, and Trained (one model ready for evaluation)
"""

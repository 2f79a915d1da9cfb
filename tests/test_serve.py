"""`rayfit serve`: a finished run's model behind Ray Serve over loopback. Good requests get the
answers `rayfit predict` gives; bad ones a 4xx naming the problem, and the replica keeps serving."""
from __future__ import annotations

import json
import math
import socket
import threading
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from rayfit.evaluation.manifest import write_manifest
from rayfit.cli import main
from rayfit.predict import predict_file
from rayfit.serve import ServeSettings, start_serving, stop_serving


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(finished_run):
    """The suite's full run (tests/conftest.py), its chosen model served."""
    run = finished_run["dir"]
    settings = ServeSettings(port=_free_port(), max_rows=100, max_batch_size=8, max_bytes=20_000)
    url = start_serving(str(run), settings)  # on the suite's Ray, which others share: under the app's own prefix
    yield {"run": run, "url": url, "settings": settings}
    stop_serving(str(run), settings)


def _call(url: str, path: str, body=None, raw: bytes = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url + path, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _rows(messy_csv, n=40) -> list[dict]:
    frame = pd.read_csv(messy_csv).drop(columns=["label"]).head(n)
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dict("records")]


def test_health_and_schema(served):
    status, health = _call(served["url"], "/healthz")
    assert status == 200 and health["status"] == "ok" and health["task"] == "classification"
    status, schema = _call(served["url"], "/schema")
    assert status == 200
    kinds = {c["name"]: c["kind"] for c in schema["columns"]}
    # the ID and the constant were dropped in training: a row need not have them
    assert kinds == {"num1": "number", "num2": "number", "city": "category", "signup": "datetime"}
    assert schema["classes"] == ["no", "yes"] and schema["target"] == "label" and schema["max_rows"] == 100


def test_predictions_equal_rayfit_predict(served, messy_csv, tmp_path):
    rows = _rows(messy_csv)
    status, answer = _call(served["url"], "/predict", rows)
    assert status == 200 and answer["rows"] == len(rows), answer
    pd.DataFrame(rows).to_csv(tmp_path / "rows.csv", index=False)
    expected = predict_file(str(served["run"]), str(tmp_path / "rows.csv"))
    assert answer["predictions"] == expected["prediction"].tolist()
    served_p = np.array([[p["no"], p["yes"]] for p in answer["probabilities"]])
    assert np.allclose(served_p, expected[["proba_no", "proba_yes"]].to_numpy(), atol=1e-9)
    # {"rows": [...]} is the same request; extra keys (the ID, the target) are ignored
    extra = [{**row, "customer_id": 7, "label": "yes"} for row in rows]
    assert _call(served["url"], "/predict", {"rows": extra})[1]["predictions"] == answer["predictions"]


def test_requests_at_once_are_batched_and_each_gets_its_own_answers(served, messy_csv):
    rows = _rows(messy_csv, 24)
    alone = _call(served["url"], "/predict", rows)[1]["predictions"]
    answers = [None] * 8

    def send(i):  # request i: rows i, i+8, i+16
        answers[i] = _call(served["url"], "/predict", rows[i::8])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, (status, answer) in enumerate(answers):
        assert status == 200 and answer["predictions"] == alone[i::8]


@pytest.mark.parametrize("body, raw, status, says", [
    (None, b"{not json", 400, "not JSON"),
    ({"city": "paris"}, None, 422, "list of row objects"),
    ([1, 2], None, 422, "list of row objects"),
    ([], None, 422, "no rows"),
    ([{"num1": 1.0, "num2": 2.0, "city": "nice"}], None, 422, "row 0 lacks column signup"),
    ([{"num1": "lots", "num2": 2.0, "city": "nice", "signup": "2024-01-01"}], None, 422,
     "row 0, column 'num1': expected a number, got 'lots'"),
    ([{"num1": 1.0, "num2": [2], "city": "nice", "signup": "2024-01-01"}], None, 422, "column 'num2'"),
    ([{"num1": 1.0, "num2": 2.0, "city": "nice", "signup": "2024-01-01"}] * 101, None, 413, "101 rows, more than the 100"),
    (None, b"[" * 5000 + b"]" * 5000, 400, "nested too deeply"),
    (None, b" " * 30_000 + b"[]", 413, "over the limit of 20000"),
], ids=["not-json", "an-object", "not-objects", "empty", "missing-column", "not-a-number", "a-list-value", "too-many-rows",
        "nested-deeply", "body-too-large"])
def test_a_bad_request_is_a_4xx_that_names_the_problem(served, body, raw, status, says):
    got, answer = _call(served["url"], "/predict", body, raw)
    assert got == status and says in answer["detail"], answer
    # the replica is still there
    good = [{"num1": 1.0, "num2": 2.0, "city": "nice", "signup": "2024-01-01"}]
    assert _call(served["url"], "/predict", good)[0] == 200


def test_serve_says_what_is_wrong_before_it_starts(tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert "not a finished rayfit run" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "model.json").write_text("{}")
        write_manifest(tmp_path / "model")
        assert main(["serve", str(tmp_path), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_serve_lives_beside_other_applications_and_never_replaces_or_removes_them(served, tmp_path):
    """On a Ray others share, the model is an application of the run's own name under its own route
    prefix: a second deployment of that name is refused, and stopping one removes it alone."""
    import shutil

    from ray import serve

    from rayfit.errors import UserError
    from rayfit.serve import app_name

    name = app_name(str(served["run"]))
    assert served["url"].endswith(f"/{name}") and name.startswith("rayfit-")

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Other:
        def __call__(self, request):
            return "someone else's"

    serve.run(Other.bind(), name="someone-else", route_prefix="/else", blocking=False)
    try:
        with pytest.raises(UserError, match=f"a Serve application named {name} already runs"):
            start_serving(str(served["run"]), served["settings"])
        copy = tmp_path / "copy"
        shutil.copytree(served["run"] / "model", copy / "model")
        url = start_serving(str(copy), served["settings"])
        assert url.endswith("/rayfit-copy") and _call(url, "/healthz")[0] == 200
        stop_serving(str(copy), served["settings"])
        apps = serve.status().applications
        assert "rayfit-copy" not in apps and "someone-else" in apps and name in apps
        assert _call(served["url"], "/healthz")[0] == 200  # the first one serves on
    finally:
        serve.delete("someone-else")

"""A real two-node Ray cluster on loopback (cluster/local.py) and a real S3-compatible object store
(moto's server) on loopback: both nodes serve work, token authentication keeps out a client
without the token, the quickstart submitted as a Ray job (`rayfit submit --storage s3://...`), its
search and both frameworks included, trains on both nodes and writes its run to the object store
only, `rayfit fetch` brings it back, a local storage path the nodes share works too, and `down`
stops exactly what `up` started."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from rayfit.cli import main
from rayfit.cluster.local import LocalCluster, group_processes
from rayfit.cluster.session import pointer_file

pytestmark = pytest.mark.cluster

RAYFIT = str(Path(sys.executable).with_name("rayfit"))
BUCKET = "rayfit-runs"

# Runs in a client process with the cluster's environment: one task pinned to each node.
WHERE_TASKS_RAN = """
import json, ray
ray.init(address="{address}", logging_level="ERROR")
where = ray.remote(lambda: ray.get_runtime_context().get_node_id())
nodes = [ray.get(where.options(resources={{f"rayfit_node_{{i}}": 1}}).remote()) for i in range(2)]
print(json.dumps({{"nodes": nodes, "alive": sum(n["Alive"] for n in ray.nodes()),
                  "cpus": ray.cluster_resources().get("CPU"), "gpus": ray.cluster_resources().get("GPU", 0)}}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def object_store():
    """moto's S3 server on loopback, its bucket made, and the AWS variables every process of the
    test (the cluster's nodes among them, which inherit them) reaches it by."""
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "rayfit-test",
           "AWS_SECRET_ACCESS_KEY": "s3cr3t-7f3a9c", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import boto3

        s3 = boto3.client("s3")
        deadline = time.monotonic() + 30
        while True:
            try:
                s3.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield s3
    finally:
        server.terminate()
        server.wait(timeout=30)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def cluster(object_store, tmp_path_factory):
    directory = tmp_path_factory.mktemp("cluster")
    assert main(["cluster", "up", "--cpus", "1,1", "--gpus", "0,2", "--dir", str(directory)]) == 0
    cluster = LocalCluster.load(directory)
    yield cluster
    if (directory / "cluster.json").exists():  # the last test stops it and checks; this is for a failure
        cluster.down()


def _rayfit(cluster, *argv, timeout=300, env=None):
    return subprocess.run([RAYFIT, *argv], capture_output=True, text=True, timeout=timeout,
                          env=env or {**os.environ, **cluster.env()})


def test_both_nodes_serve_work_and_a_client_without_the_token_is_refused(cluster, tmp_path, capsys):
    assert oct(cluster.token_path.stat().st_mode & 0o777) == "0o600"
    client = subprocess.run([sys.executable, "-c", WHERE_TASKS_RAN.format(address=cluster.address)],
                            capture_output=True, text=True, env={**os.environ, **cluster.env()}, timeout=120)
    assert client.returncode == 0, client.stderr[-2000:]
    seen = json.loads(client.stdout.strip().splitlines()[-1])
    assert seen["alive"] == 2 and len(set(seen["nodes"])) == 2  # each pinned task ran on its own node
    assert seen["cpus"] == 2 and seen["gpus"] == 2  # the worker node's logical GPUs

    # Without the token, rayfit refuses to join: one error line naming token authentication.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    refused = _rayfit(cluster, "run", "--address", cluster.address, "--out", str(tmp_path / "run"),
                      "--set", "ray.connect_timeout_s=20", env={**env, "HOME": str(tmp_path)})
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.startswith("error:") and "token" in refused.stderr
    assert not (tmp_path / "run").exists()


def test_the_quickstart_submitted_to_s3_storage_trains_on_both_nodes_and_is_fetched(cluster, object_store,
                                                                                    tmp_path, monkeypatch, chromium,
                                                                                    capfd):
    monkeypatch.chdir(tmp_path)  # a path mistaken for a URI would show up here as ./s3:
    started = time.time()
    # The quickstart as users submit it, its search and both frameworks included, smaller: 2
    # baselines, networks of 3 epochs, a search of 2 trials of 3 epochs. The torch network is
    # trained by a Ray Train worker group of 2 workers of 1 CPU, which only the two nodes together
    # can hold, and the search's 2 trials of 1 CPU run at once, one on each node. Tune reads its
    # experiment back from S3 in the job's driver, whose working directory must still exist (the
    # worker node's runtime-env agent once unpacked the job's working_dir over it: cluster/local.py).
    # rayfit itself shipped with the job.
    submitted = _rayfit(cluster, "submit", "--address", cluster.dashboard_url, "--storage", f"s3://{BUCKET}/runs",
                        "--ship", "--set", "baselines.models=[dummy,linear]", "--set", "torch.launch=ray_train",
                        "--set", "torch.gpu=false", "--set", "torch.epochs=3", "--set", "keras.epochs=3",
                        "--set", "tune.num_samples=2", "--set", "tune.max_t=3",
                        "--set", "report.importance_repeats=1", "--set", "evaluation.cv_networks=false")
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-2000:]
    lines = submitted.stdout.splitlines()
    job_id = lines[0].removeprefix("job: ")
    assert lines[0].startswith("job: ") and lines[1].startswith(f"run: s3://{BUCKET}/runs/quickstart-")
    assert any("torch_tuned: done, 2 trials" in line for line in lines)
    assert any("evaluate: done, best" in line for line in lines)
    assert cluster.token_path.read_text().strip() not in submitted.stdout + submitted.stderr

    # Everything of the run is in the object store, nothing on local disk.
    run_key = lines[1].removeprefix(f"run: s3://{BUCKET}/").rstrip("/")
    keys = {o["Key"] for o in object_store.list_objects_v2(Bucket=BUCKET, Prefix=run_key)["Contents"]}
    for name in ("run_state.json", "metrics.json", "report.html", "run.log", "model/model.json",
                 "models/torch_mlp/model.json", "models/keras_mlp/model.json", "models/torch_tuned/model.json"):
        assert f"{run_key}/{name}" in keys
    assert any(k.startswith(f"{run_key}/checkpoints/torch_mlp/checkpoint_") for k in keys)  # Ray Train's
    assert any(k.startswith(f"{run_key}/tune/search/experiment_state-") for k in keys)  # Tune's
    stored = json.loads(object_store.get_object(Bucket=BUCKET, Key=f"{run_key}/metrics.json")["Body"].read())
    assert {"torch_mlp", "keras_mlp", "torch_tuned"} <= set(stored["models"])
    assert stored["tuning"]["trials"] == 2 and len(set(stored["tuning"]["nodes"])) == 2  # a trial on each node
    assert not list(tmp_path.iterdir())
    staged = [p for p in Path(tempfile.gettempdir()).glob("rayfit-run-*") if p.stat().st_mtime >= started]
    assert not staged  # the job's staging directory went once its files were up

    fetched = _rayfit(cluster, "fetch", job_id, "--out", str(tmp_path / "fetched"), "--address", cluster.dashboard_url)
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    run = tmp_path / "fetched"
    assert json.loads((run / "run_state.json").read_text())["status"] == "finished"
    assert (run / "report.html").stat().st_size > 0 and (run / "model" / "model.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == stored and (run / "models" / "torch_tuned" / "model.json").is_file()
    assert (run / "models" / "keras_mlp" / "model.json").is_file()
    assert len(set(metrics["models"]["torch_mlp"]["nodes"])) == 2  # its workers ran on both nodes
    assert metrics["resources"]["nodes"] == 2
    assert len(metrics["resources"]["per_node"]) == 2
    # the quickstart's report, as fetched, as a person sees it
    from browser import assert_renders_cleanly, check_in_browser

    assert_renders_cleanly(check_in_browser(run / "report.html", chromium, "quickstart"), at_least_images=5)

    # Neither the cluster's token nor the storage's secret is in any file of the run.
    secrets = [cluster.token_path.read_text().strip().encode(), os.environ["AWS_SECRET_ACCESS_KEY"].encode()]
    for file in (p for p in run.rglob("*") if p.is_file()):
        content = file.read_bytes()
        assert not any(secret in content for secret in secrets), file

    # A second fetch never writes over the first.
    again = _rayfit(cluster, "fetch", job_id, "--out", str(run), "--address", cluster.dashboard_url)
    assert again.returncode == 2 and again.stderr.startswith("error:")

    # The run's model predicts straight from the object store.
    rows = tmp_path / "rows.csv"
    from rayfit.data import load_table

    table, target = load_table("synthetic")
    table.drop(columns=[target]).head(5).to_csv(rows, index=False)
    capfd.readouterr()
    assert main(["predict", f"s3://{BUCKET}/{run_key}", "--data", str(rows)]) == 0  # this process: no Ray needed
    predicted = capfd.readouterr().out
    assert predicted.splitlines()[0].startswith("prediction") and len(predicted.splitlines()) == 6

    # and opened from Python: rayfit.load of the URI, the same answers as rayfit predict's
    import rayfit

    opened = rayfit.load(f"s3://{BUCKET}/{run_key}")
    assert opened.path == f"s3://{BUCKET}/{run_key}" and opened.metrics == metrics
    answers = [line.split(",")[0] for line in predicted.splitlines()[1:]]
    assert [str(v) for v in opened.best_model.predict(pd.read_csv(rows))] == answers
    assert len(opened.leaderboard()) == len(metrics["models"])


SUBMIT_A_FRAME = """
import json, sys
from sklearn.datasets import load_iris
import rayfit

job = rayfit.submit(data=load_iris(as_frame=True).frame, target="target", address=sys.argv[1], storage=sys.argv[2],
                    **{{"torch.enabled": False, "keras.enabled": False, "tune.enabled": False,
                       "baselines.models": ["dummy", "linear"], "report.importance_repeats": 1}})
run = job.wait(progress=False)
print(json.dumps({{"job": job.id, "status": job.status(), "run": str(run.path), "best": run.best_model_name,
                  "predicted": list(run.best_model.predict(load_iris(as_frame=True).frame.head(3)))}}))
"""


def test_a_dataframe_submitted_from_python_writes_to_a_local_path_the_nodes_share(cluster, tmp_path):
    """`rayfit.submit`, the Python twin of `rayfit submit`: a DataFrame travels with the job as a
    Parquet file, `Job.wait` follows it to its run, which the nodes' shared directory holds."""
    submitted = subprocess.run([sys.executable, "-c", SUBMIT_A_FRAME.format(), cluster.dashboard_url,
                                str(tmp_path / "storage")], capture_output=True, text=True, timeout=300,
                               env={**os.environ, **cluster.env()})
    assert submitted.returncode == 0, submitted.stdout[-2000:] + submitted.stderr[-2000:]
    seen = json.loads(submitted.stdout.strip().splitlines()[-1])
    runs = list((tmp_path / "storage").glob("*/metrics.json"))
    assert len(runs) == 1 and str(runs[0].parent) == seen["run"] and runs[0].parent.name.startswith("dataframe-")
    assert seen["status"] == "SUCCEEDED" and seen["best"] in ("dummy", "linear")
    assert json.loads(runs[0].read_text())["best_model"] == seen["best"] and len(seen["predicted"]) == 3

    listed = _rayfit(cluster, "jobs", "list", "--address", cluster.dashboard_url)
    assert seen["job"] in listed.stdout and "SUCCEEDED" in listed.stdout
    assert str(runs[0].parent) in listed.stdout  # the job's run, from its metadata


def test_a_lost_node_fails_the_job_clearly_and_resume_from_storage_finishes_it(cluster, object_store):
    """The worker node's raylet killed while a 2-worker group spans both nodes: the job cannot
    place its workers again on what remains and fails with the watchdog's message; `rayfit resume
    URI` on another Ray finishes the run from the checkpoint in the object store, and the finished
    baselines are not trained again. Runs last but one: the cluster keeps one node after it. The resume
    is a process of its own: its Ray's workers must reach the object store, and the suite's Ray
    started its workers before this module pointed AWS_ENDPOINT_URL at moto."""
    import psutil

    submitted = _rayfit(cluster, "submit", "--address", cluster.dashboard_url, "--storage", f"s3://{BUCKET}/lost",
                        "--no-wait", "--set", "keras.enabled=false", "--set", "tune.enabled=false",
                        "--set", "baselines.models=[dummy,linear]", "--set", "torch.launch=ray_train", "--set", "torch.gpu=false",
                        # epochs of about a second (batch 2): the loss always lands mid-training
                        "--set", "torch.epochs=12", "--set", "torch.patience=12", "--set", "torch.batch_size=2",
                        "--set", "torch.checkpoint_every_s=0",  # a checkpoint each epoch: the loss lands after two
                        "--set", "ray.stall_timeout_s=8",
                        "--set", "report.importance_repeats=1", "--set", "evaluation.cv_networks=false")
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    job_id = submitted.stdout.splitlines()[0].removeprefix("job: ")
    run = submitted.stdout.splitlines()[1].removeprefix("run: ")
    run_key = run.removeprefix(f"s3://{BUCKET}/")

    def checkpoints() -> list[str]:
        listed = object_store.list_objects_v2(Bucket=BUCKET, Prefix=f"{run_key}/checkpoints/torch_mlp/checkpoint_")
        return [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith("train_state.json")]

    deadline = time.monotonic() + 240
    while len(checkpoints()) < 2:  # the first one recorded by Ray Train as its latest by then
        assert time.monotonic() < deadline, "no checkpoint of the worker group reached the object store"
        time.sleep(0.5)
    worker_node = cluster.nodes[1].pid
    raylets = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "raylet" and os.getpgid(p.pid) == worker_node]
    assert len(raylets) == 1
    raylets[0].kill()

    deadline = time.monotonic() + 240
    while True:  # `rayfit jobs status` prints "<id>: <STATUS>, run <uri>"
        status = _rayfit(cluster, "jobs", "status", job_id, "--address", cluster.dashboard_url).stdout
        status = status.split(":", 1)[-1].strip().split(",")[0]
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        assert time.monotonic() < deadline, "the job neither finished nor failed after its node was lost"
        time.sleep(1)
    logs = _rayfit(cluster, "jobs", "logs", job_id, "--address", cluster.dashboard_url).stdout
    # the node was lost mid-training: a clear message, not a traceback, and not a success
    assert status == "FAILED", logs[-3000:]
    assert "error: stage 'torch_mlp' made no progress" in logs, logs[-3000:]
    resumed = _rayfit(cluster, "resume", run, "--address", "local")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    shown = " ".join(resumed.stdout.split())  # the display wraps long lines without a terminal
    assert "2 stage(s) already finished" in shown
    assert "baselines:" not in shown  # the finished baselines are loaded, not retrained
    epochs = [int(m.group(1)) for m in re.finditer(r"torch_mlp: (\d+)/12", shown)]
    assert epochs and min(epochs) > 1  # training went on from its checkpoint in storage
    metrics = json.loads(object_store.get_object(Bucket=BUCKET, Key=f"{run_key}/metrics.json")["Body"].read())
    assert len(metrics["models"]["torch_mlp"]["val"]) > 0


def test_a_cluster_that_goes_away_mid_run_is_an_error_within_seconds_and_resume_finishes_the_run(tmp_path):
    """The GCS of the cluster a run joined goes away mid-run (its process killed: the head's other
    processes give up on it only after 60 s): the driver says so (the address, the stage, the resume
    command) well within 30 s, before Ray's core would end it on its own after 60 s, and exits 2;
    `rayfit resume` on another Ray finishes the run. A cluster of its own: the module's is stopped
    by the last test. (Where the node's raylet dies at once too, Ray's core worker ends a driver on
    that node at once, before anything of rayfit's can speak.)"""
    directory, run = tmp_path / "going", tmp_path / "run"
    assert main(["cluster", "up", "--cpus", "2", "--dir", str(directory)]) == 0
    going = LocalCluster.load(directory)
    try:
        driver = subprocess.Popen(
            [RAYFIT, "run", "--data", "iris", "--address", going.address, "--out", str(run),
             "--set", "keras.enabled=false", "--set", "tune.enabled=false", "--set", "baselines.models=[dummy,linear]",
             "--set", "torch.launch=task", "--set", "torch.epochs=60", "--set", "torch.patience=60",
             "--set", "torch.batch_size=2", "--set", "evaluation.cv_networks=false", "--set", "report.importance_repeats=1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **going.env()})
        deadline = time.monotonic() + 180
        while not ((run / "run_state.json").is_file() and '"linear"' in (run / "run_state.json").read_text()):
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run never finished its baselines"
            time.sleep(0.2)
        gcs = [p for p in group_processes(going.nodes[0].pid) if p.name() == "gcs_server"]
        assert len(gcs) == 1, [p.name() for p in group_processes(going.nodes[0].pid)]
        gcs[0].kill()  # mid-run: the network trains
        gone = time.monotonic()
        out, err = driver.communicate(timeout=90)
        took = time.monotonic() - gone
    finally:
        if (directory / "cluster.json").exists():
            going.down()
    said = [line for line in (err + out).splitlines() if line.startswith("error: ")]
    assert driver.returncode == 2 and said, (driver.returncode, out[-2000:], err[-2000:])
    # the GCS's own address (Ray may name the node by another of this machine's addresses)
    assert f":{going.port} stopped answering during stage" in said[-1], said
    assert said[-1].endswith(f"resume with: rayfit resume {run}"), said
    assert took < 30, f"{took:.0f} s from the cluster's loss to the driver's exit"
    resumed = subprocess.run([RAYFIT, "resume", str(run), "--address", "local"], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    assert "baselines:" not in " ".join(resumed.stdout.split())  # finished before the loss: loaded
    assert json.loads((run / "metrics.json").read_text())["best_model"]


def test_down_stops_exactly_what_up_started(cluster):
    groups = [node.pid for node in cluster.nodes]
    # the worker node's own Ray temp dir (cluster/local.py), made by `up` and removed by `down`
    temp_dirs = [node.temp_dir for node in cluster.nodes]
    assert temp_dirs[0] == "" and Path(temp_dirs[1]).is_dir()
    assert main(["cluster", "down", "--dir", str(cluster.directory)]) == 0
    assert not any(group_processes(pgid) for pgid in groups)  # every process of both nodes is gone
    assert not Path(temp_dirs[1]).exists()
    assert not (cluster.directory / "cluster.json").exists() and not (cluster.directory / "auth_token").exists()
    pointer = Path(pointer_file())  # Ray's "auto" lookups must not follow a pointer to the stopped cluster
    assert not (pointer.exists() and pointer.read_text().strip().endswith(f":{cluster.port}"))


def test_down_never_signals_a_process_group_that_is_no_longer_the_node_s(tmp_path):
    """cluster.json names process groups; once a node's group is gone its number can be another
    process's: `down` signals a group only while its leader is the node's own process."""
    import psutil

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        record = {"address": "127.0.0.1:1", "dashboard_url": "", "port": 1, "dashboard_port": 2,
                  "nodes": [{"cpus": 1, "pid": stranger.pid, "started": psutil.Process(stranger.pid).create_time() - 50}]}
        (tmp_path / "cluster.json").write_text(json.dumps(record))
        assert LocalCluster.load(tmp_path).down(timeout_s=2) == 0
        assert stranger.poll() is None  # another start time: left alone
        del record["nodes"][0]["started"]  # a record from before start times: not `ray start`, left alone
        (tmp_path / "cluster.json").write_text(json.dumps(record))
        assert LocalCluster.load(tmp_path).down(timeout_s=2) == 0
        assert stranger.poll() is None
        record["nodes"][0]["started"] = psutil.Process(stranger.pid).create_time()  # the node itself: stopped
        (tmp_path / "cluster.json").write_text(json.dumps(record))
        assert LocalCluster.load(tmp_path).down(timeout_s=5) == 1
        assert stranger.wait(timeout=10) is not None
    finally:
        stranger.kill()

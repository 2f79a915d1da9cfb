"""`rayfit`: the only place that prints to the user and decides exit codes.

Exit codes: 0 success, 2 bad input (one `error: ...` line on stderr, no traceback), 1 a bug
(traceback kept), 130 interrupted (SIGINT or SIGTERM; the last line says how to resume).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Optional, Sequence

from rayfit.errors import disk_problem, one_line, read_json, UserError
from rayfit.signals import EXIT_INTERRUPTED, stop_on_signals, stop_reason

EXIT_OK, EXIT_BUG, EXIT_USER = 0, 1, 2


STORAGE_HELP = ("where runs go (config key storage): a directory, default runs/; a path every node shares; "
                "or an object-store URI such as s3://bucket/prefix (endpoint and credentials from AWS_* variables)")
ADDRESS_HELP = ("the Ray to use: host:port or ray://host:port to join a cluster, auto for the one on this "
                "machine, local for a private Ray; default: ray.address, else RAY_ADDRESS, else a running "
                "`ray start` cluster on this machine, else a private Ray")
TRUST_HELP = ("load a model directory that has no MANIFEST.json (one rayfit cannot vouch for: written before "
              "manifests, or its manifest removed); a directory whose files differ from its manifest is refused still")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line and exit code 2 like every other."""

    def error(self, message: str):
        raise UserError(message)


TASKS = ["auto", "classification", "regression", "clustering"]
TASK_HELP = ("default: inferred from the target; clustering needs no target (--target then names a label column "
             "that judges the clusters)")
TIME_LIMIT_HELP = ("a hard limit for the whole command, from its start to its exit, report included (config key "
                   "time_limit): the stages share it and stop at their share with what they have")
TEST_HELP = ("a .csv / .parquet file of test rows of your own (config key data.test): every row of --data "
             "then trains or validates, and every model is scored on these")

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rayfit", description="Distributed training on Ray: data -> models -> report.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run an experiment (no arguments: the built-in quickstart)")
    run.add_argument("config", nargs="?", help="experiment YAML (see examples/)")
    run.add_argument("--data", help="a .csv / .parquet file or a built-in set (synthetic, iris, ...)")
    run.add_argument("--target", help="the column to predict")
    run.add_argument("--test", help=TEST_HELP)
    run.add_argument("--time-limit", type=float, metavar="SECONDS", help=TIME_LIMIT_HELP)
    run.add_argument("--task", choices=TASKS, help=TASK_HELP)
    run.add_argument("--out", help="run directory or storage URI (must not exist or be empty); "
                                   "default <storage>/<name>-<time>")
    run.add_argument("--storage", help=STORAGE_HELP)
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                     help="override a config key, e.g. --set torch.epochs=10 (repeatable)")
    run.add_argument("--address", help=ADDRESS_HELP)
    run.add_argument("--verbose", action="store_true", help="show Ray's own output on the terminal")

    resume = commands.add_parser("resume", help="finish an interrupted run from its checkpoints")
    resume.add_argument("run_dir", help="the interrupted run: its directory or storage URI")
    resume.add_argument("--address", help=ADDRESS_HELP + " (default: the run's own ray.address)")
    resume.add_argument("--verbose", action="store_true", help="show Ray's own output on the terminal")
    resume.add_argument("--trust-unverified", action="store_true", help=TRUST_HELP)

    predict = commands.add_parser("predict", help="predict raw rows with a run's best model")
    predict.add_argument("run_dir", help="a finished run: its directory or storage URI")
    predict.add_argument("--data", required=True, help="a .csv / .parquet file of raw rows")
    predict.add_argument("--out", help="where to write predictions (CSV); default: stdout")
    predict.add_argument("--model", help="an exported model's name (export.models: all); default: the best")
    predict.add_argument("--trust-unverified", action="store_true", help=TRUST_HELP)

    evaluate = commands.add_parser("evaluate", help="score a finished run's exported models on new labelled rows")
    evaluate.add_argument("run_dir", help="a finished run: its directory or storage URI")
    evaluate.add_argument("--data", required=True, help="a .csv / .parquet file of labelled raw rows")
    evaluate.add_argument("--out", help="a new directory for the evaluation (default: RUN-evaluated-<time> "
                                        "beside the run)")
    evaluate.add_argument("--trust-unverified", action="store_true", help=TRUST_HELP)

    report = commands.add_parser("report", help="rebuild a finished run's report from its stored results")
    report.add_argument("run_dir", help="a finished run's directory")
    report.add_argument("--trust-unverified", action="store_true", help=TRUST_HELP)

    serve = commands.add_parser("serve", help="serve a run's best model over HTTP with Ray Serve")
    serve.add_argument("run_dir", help="a finished run: its directory or storage URI")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="default 8000")
    serve.add_argument("--replicas", type=int, default=1, help="model replicas behind the endpoint (default 1)")
    serve.add_argument("--max-batch-size", type=int, default=32, help="requests batched into one prediction")
    serve.add_argument("--max-rows", type=int, default=10_000, help="rows one request may hold")
    serve.add_argument("--model", help="an exported model's name (export.models: all); default: the best")
    serve.add_argument("--verbose", action="store_true", help="Ray Serve's own log lines on the terminal")
    serve.add_argument("--address", help=ADDRESS_HELP)
    serve.add_argument("--trust-unverified", action="store_true", help=TRUST_HELP)

    submit = commands.add_parser("submit", help="run an experiment as a job on a Ray cluster (Ray Jobs API)")
    submit.add_argument("config", nargs="?", help="experiment YAML (see examples/)")
    submit.add_argument("--data", help="a .csv / .parquet file (shipped with the job) or a built-in set")
    submit.add_argument("--target", help="the column to predict")
    submit.add_argument("--test", help=TEST_HELP + " (shipped with the job like --data)")
    submit.add_argument("--time-limit", type=float, metavar="SECONDS",
                        help=TIME_LIMIT_HELP + "; counted from the job driver's start, on the cluster")
    submit.add_argument("--task", choices=TASKS, help=TASK_HELP)
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config key (repeatable)")
    _dashboard_address(submit)
    submit.add_argument("--storage", help="where the job writes its run (config key storage): an object-store "
                                          "URI such as s3://bucket/prefix, or a directory the cluster's nodes "
                                          "share with this machine")
    submit.add_argument("--no-wait", action="store_true", help="return once the job is submitted")
    submit.add_argument("--ship", action="store_true",
                        help="send this machine's rayfit with the job (py_modules), for a cluster without it")

    fetch = commands.add_parser("fetch", help="copy a finished run from its storage to a local directory")
    fetch.add_argument("run", help="a job id from rayfit submit, or a run's storage URI")
    fetch.add_argument("--out", required=True, help="a local directory that is absent or empty")
    _dashboard_address(fetch, " (to look up a job id)")

    jobs = commands.add_parser("jobs", help="the jobs of a Ray cluster: list, status, logs, stop")
    jobs.add_argument("action", choices=["list", "status", "logs", "stop"])
    jobs.add_argument("job_id", nargs="?", help="the job (status, logs, stop)")
    _dashboard_address(jobs)
    jobs.add_argument("--follow", action="store_true", help="logs: follow until the job ends")

    cluster = commands.add_parser("cluster", help="a local multi-node Ray cluster on loopback (tests, development)")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", required=True, parser_class=_Parser)
    up = cluster_commands.add_parser("up", help="start a head node and worker nodes, token authentication on")
    up.add_argument("--cpus", type=_numbers(float), default=[1.0, 1.0], metavar="N,N,...",
                    help="CPUs per node, the head first (default 1,1: a head and one worker node)")
    up.add_argument("--gpus", type=_numbers(int), metavar="N,N,...", help="logical GPUs per node (default none)")
    up.add_argument("--dir", type=Path, default=None, help="where the cluster's record and token live")
    down = cluster_commands.add_parser("down", help="stop the nodes `rayfit cluster up` started")
    down.add_argument("--dir", type=Path, default=None, help="the directory given to `up`")
    return parser


def _dashboard_address(parser: argparse.ArgumentParser, why: str = "") -> None:
    """--address of the commands that talk to the Jobs API: the head's dashboard."""
    parser.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS"),
                        help=f"the cluster's dashboard, e.g. http://HEAD:8265{why} (default: RAY_API_SERVER_ADDRESS)")


def _numbers(kind):
    def parse(text: str) -> list:
        try:
            values = [kind(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        if not values or any(v < 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected non-negative numbers, got {text!r}")
        return values

    return parse


def _submit(args) -> int:
    from rayfit.cluster.jobs import submit
    from rayfit.config import load_experiment

    flags = [(key, value) for key, value in (("data.test", args.test), ("time_limit", args.time_limit))
             if value is not None]
    exp = load_experiment(args.config, args.data, args.target, args.task, tuple(args.overrides), flags)
    return submit(exp, args.address, args.storage, wait=not args.no_wait, say=_say, ship=args.ship)


def _fetch(args) -> int:
    from rayfit.cluster.jobs import client, run_of
    from rayfit.cluster.storage import Location, fetch_run, is_uri
    from rayfit.lease import LEASE_FILE

    run = args.run
    if not is_uri(run) and not Path(run).exists():  # a job id: its run from the job's metadata
        run = run_of(client(args.address), run)
    out = fetch_run(Location.of(run), Path(args.out), skip=(LEASE_FILE,))  # the copy has no driver yet
    _say(f"fetched {run} -> {out}")
    return EXIT_OK


def _jobs(args) -> int:
    from rayfit.cluster.jobs import RUN_KEY, client, follow

    jobs = client(args.address)
    if args.action == "list":
        for job in sorted(jobs.list_jobs(), key=lambda j: j.start_time or 0):
            run = (job.metadata or {}).get(RUN_KEY, "")
            _say(f"{job.submission_id or job.job_id}  {str(job.status).split('.')[-1]:<9}  {run or job.entrypoint}")
        return EXIT_OK
    if not args.job_id:
        raise UserError(f"jobs {args.action}: name the job, e.g. rayfit jobs {args.action} raysubmit_...")
    try:
        if args.action == "status":
            info = jobs.get_job_info(args.job_id)
            _say(f"{args.job_id}: {str(info.status).split('.')[-1]}"
                 + (f", run {info.metadata[RUN_KEY]}" if (info.metadata or {}).get(RUN_KEY) else ""))
            return EXIT_OK
        if args.action == "stop":
            stopped = jobs.stop_job(args.job_id)
            _say(f"{args.job_id}: {'stop requested' if stopped else 'already finished'}")
            return EXIT_OK
        if args.follow:
            problem = follow(jobs, args.job_id, _say)
            if problem:
                _say(f"error: {problem}")
            return EXIT_BUG if problem else EXIT_OK
        sys.stdout.write(jobs.get_job_logs(args.job_id))
        return EXIT_OK
    except RuntimeError as exc:  # the Jobs API's answer for an unknown job
        raise UserError(f"jobs {args.action} {args.job_id}: {one_line(exc)}") from None


def _say(line: str) -> None:
    print(line, flush=True)


def _cluster(args) -> int:
    from rayfit.cluster.local import DEFAULT_DIR, LocalCluster

    directory = args.dir or DEFAULT_DIR
    if args.cluster_command == "down":
        stopped = LocalCluster.load(directory).down()
        print(f"cluster: stopped {stopped} node(s)")
        return EXIT_OK
    if not args.cpus or args.cpus[0] <= 0:
        raise UserError("--cpus: the head node needs at least a fraction of a CPU")
    print(f"cluster: starting {len(args.cpus)} node(s) on loopback ...", flush=True)
    cluster = LocalCluster.up(directory, args.cpus, args.gpus)
    print(f"cluster: {len(cluster.nodes)} node(s) up at {cluster.address}, dashboard {cluster.dashboard_url}")
    print(f"cluster: connect with RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={cluster.token_path} "
          f"(the token file), e.g. rayfit run --address {cluster.address}")
    print(f"cluster: stop with rayfit cluster down --dir {directory}")
    return EXIT_OK


def _run(args) -> int:
    """`rayfit run`: the experiment from the command line, then `rayfit.run` (rayfit/api.py)."""
    from rayfit.api import run
    from rayfit.config import load_experiment
    from rayfit.progress import Display
    from rayfit.run_dir import terminal_stream

    flags = [(key, value) for key, value in (("ray.address", args.address), ("storage", args.storage),
                                             ("data.test", args.test), ("time_limit", args.time_limit))
             if value is not None]
    exp = load_experiment(args.config, args.data, args.target, args.task, tuple(args.overrides), flags)
    with Display(terminal_stream()) as display:
        run(exp, out=args.out, progress=display, verbose=args.verbose)
    return EXIT_OK


def _resume(args) -> int:
    from rayfit.api import resume
    from rayfit.progress import Display
    from rayfit.run_dir import terminal_stream

    with Display(terminal_stream()) as display:
        resume(args.run_dir, address=args.address, progress=display, verbose=args.verbose,
               trust_unverified=args.trust_unverified)
    return EXIT_OK


def _report(args) -> int:
    from rayfit.progress import Display
    from rayfit.rebuild import rebuild_report
    from rayfit.run_dir import terminal_stream

    with Display(terminal_stream()) as display:
        page = rebuild_report(args.run_dir, display)
        display.say(f"report: {page}")
    return EXIT_OK


def _serve(args) -> int:
    import tempfile
    import time

    from rayfit.cluster.session import ensure_ray
    from rayfit.run_dir import output_to_log, terminal_stream
    from rayfit.serve import ServeSettings, check_port, model_archive, start_serving, stop_serving

    for flag, value in (("--port", args.port), ("--replicas", args.replicas),
                        ("--max-batch-size", args.max_batch_size), ("--max-rows", args.max_rows)):
        if value < 1 or (flag == "--port" and value > 65535):
            raise UserError(f"{flag}: {value} is out of range")
    settings = ServeSettings(host=args.host, port=args.port, replicas=args.replicas,
                             max_batch_size=args.max_batch_size, max_rows=args.max_rows, model=args.model,
                             trust_unverified=args.trust_unverified)
    model_archive(args.run_dir, args.model)  # not a finished run: said before Ray starts
    check_port(settings.host, settings.port)
    # Ray's and Ray Serve's own output (each replica's requests) to a log, unless --verbose
    # a file of this command's own (created exclusively, readable by this user only): never another
    # user's file of a guessable name in the shared temporary directory
    handle, name = tempfile.mkstemp(prefix=f"rayfit-serve-{settings.port}-", suffix=".log")
    os.close(handle)
    log = Path(name)
    terminal = terminal_stream()
    with output_to_log(log, args.verbose):
        session = ensure_ray(args.address)
        started = False
        try:
            url = start_serving(args.run_dir, settings, own_ray=session.started)
            started = True
            print(f"serving {args.run_dir} at {url}: POST /predict, GET /schema, GET /healthz; Ctrl-C stops"
                  + ("" if args.verbose else f" (Ray Serve's log: {log})"), file=terminal, flush=True)
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print("serve: stopped", file=terminal, flush=True)
            return EXIT_OK
        finally:
            if started:  # only the application this command deployed
                stop_serving(args.run_dir, settings, own_ray=session.started)
            if session.started:
                from rayfit.cluster.session import shutdown_ray

                shutdown_ray()


def _predict(args) -> int:
    from rayfit.predict import predict_file

    if args.out and Path(args.out).exists():  # said before the model loads; the write below decides
        raise UserError(f"--out {args.out}: already exists; rayfit never overwrites a file")
    frame = predict_file(args.run_dir, args.data, args.model)
    if args.out:
        try:
            # "x": created here or not at all, so a file made meanwhile by anyone is never overwritten
            with open(args.out, "x", newline="") as out:
                frame.to_csv(out, index=False)
        except FileExistsError:
            raise UserError(f"--out {args.out}: already exists; rayfit never overwrites a file") from None
        except OSError as exc:
            raise UserError(f"--out {args.out}: cannot write there: {exc.strerror or exc}") from None
    else:
        frame.to_csv(sys.stdout, index=False)
    return EXIT_OK


def _evaluate(args) -> int:
    from rayfit.judge import evaluate_file

    out = evaluate_file(args.run_dir, args.data, args.out)
    print(f"evaluation of {args.run_dir} on {args.data}: {out / 'report.html'}")
    return EXIT_OK


def _after_interruption(run: Optional[str]) -> str:
    """What the user can do next, for the last line printed."""
    from rayfit.cluster.storage import STATE_FILE, Location

    try:
        state = Location.of(run).join(STATE_FILE) if run is not None else None
        saved = state is not None and state.is_file()
    except Exception:  # storage out of reach now: say what is known
        saved = False
    if not saved:
        return "nothing was saved; run the command again"
    try:
        finished = read_json(state).get("status") == "finished"
    except UserError:  # a damaged record: resume says so
        finished = False
    if finished:
        return f"the run had finished: {Location.of(run).join('report.html')}"
    return f"resume with: rayfit resume {shlex.quote(str(run))}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    from rayfit.budget import command_clock
    from rayfit.evaluation.manifest import trusting_unverified

    # A command line's time limit counts from the process's start; a call with argv, from now. A
    # first signal interrupts, a second exits at once.
    with command_clock(with_process=argv is None), stop_on_signals() as received:
        try:
            args = build_parser().parse_args(argv)
            commands = {"run": _run, "resume": _resume, "predict": _predict, "evaluate": _evaluate, "serve": _serve,
                        "report": _report, "submit": _submit, "fetch": _fetch, "jobs": _jobs, "cluster": _cluster}
            with trusting_unverified(getattr(args, "trust_unverified", False)):
                return commands[args.command](args)
        except UserError as exc:
            message = " ".join(str(exc).split())  # one line, whatever the message held
            print(f"error: {message}", file=sys.stderr)
            return EXIT_USER
        except KeyboardInterrupt as exc:
            reason = stop_reason()  # the process stopped itself: a cluster it joined went away
            if reason is not None:
                print(f"error: {reason}; {_after_interruption(getattr(exc, 'run_dir', None))}", file=sys.stderr)
                return EXIT_USER
            by = f" by {received[0]}" if received else ""
            print(f"error: interrupted{by}; {_after_interruption(getattr(exc, 'run_dir', None))}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except OSError as exc:
            problem = disk_problem(exc)  # the disk, not rayfit: full, read-only or not ours
            if problem is None:
                traceback.print_exc()
                return EXIT_BUG
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_USER
        except Exception:  # a bug: keep the traceback so it can be fixed
            traceback.print_exc()
            return EXIT_BUG


def entry() -> None:
    """The `rayfit` command (and `python -m rayfit.cli`): main(), then out of the process at once.
    The interpreter's own teardown takes 0.7-1.3 s on 2 cores after everything is written (Ray,
    pandas, scikit-learn, Matplotlib; 1.5-2.5 s with PyTorch and TensorFlow, which `predict` and
    `serve` load); the command's work is done by then, so it is skipped: Ray is disconnected, the
    streams and logs flushed, and the process exits with main()'s code."""
    code = main()
    import logging

    if "ray" in sys.modules:
        import ray

        # a session this command joined: leave it the way ray.shutdown does, unless the cluster
        # is gone (the command stopped itself for it): Ray's goodbye would wait on it in vain
        if ray.is_initialized() and stop_reason() is None:
            ray.shutdown()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said there
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()

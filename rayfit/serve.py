"""`rayfit serve RUN`: a finished run's model as an HTTP JSON endpoint on Ray Serve.

    POST /predict   a list of row objects, or {"rows": [...]}: {"predictions": [...]} and, for a
                    classifier, {"probabilities": [{class: p, ...}, ...]}; the same answers as
                    `rayfit predict` gives for the same rows
    GET  /schema    the columns a row needs and their kinds, the task, the classes
    GET  /healthz   {"status": "ok", "model": ...}

Each replica loads the model and its fitted preprocessing from the run's `model/` directory,
shipped to it as bytes (its manifest checked there before anything is unpickled), so a replica on
any node of a cluster serves without shared storage. Requests are batched across callers
(`@serve.batch`) into one prediction. A malformed request gets a 4xx whose `detail` names the
problem, never a crashed replica: not JSON, not a list of objects, no rows, more rows than
`max_rows`, a body over `max_bytes`, a missing column, a value of the wrong kind.
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from rayfit.errors import UserError

APP_NAME = "rayfit"


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    max_batch_size: int = 32  # requests one prediction batches together
    batch_wait_s: float = 0.01  # how long a request waits for others to batch with
    max_rows: int = 10_000  # rows one request may hold
    max_bytes: int = 10 * 2**20  # one request body's size
    model: Optional[str] = None  # an exported model's name (export.models: all); None: the best
    trust_unverified: bool = False  # --trust-unverified: a model directory without a manifest loads


def model_archive(run: str, model: Optional[str] = None) -> bytes:
    """The run's model directory (a path or a storage URI) as one tar archive: its best model's, or
    the exported model named `model`."""
    from rayfit.predict import model_location

    from rayfit.evaluation.fitted import pack_dir
    from rayfit.evaluation.manifest import verify_manifest

    location = model_location(run, model)
    with tempfile.TemporaryDirectory(prefix="rayfit-serve-") as tmp:
        directory = Path(location.uri) if location.local else location.download(Path(tmp) / "model")
        verify_manifest(directory)  # here, before a replica starts to find it wanting
        return pack_dir(directory)


def column_kinds(preprocessing) -> dict[str, str]:
    """Each raw column the model takes -> number | category | text | datetime, from the fitted pipeline."""
    kinds = dict.fromkeys(preprocessing.raw_columns, "number")
    pipeline = preprocessing.pipeline
    steps = getattr(pipeline, "named_steps", {})
    if "datetime" in steps:
        for column in steps["datetime"].parts_:
            kinds[column] = "datetime"
    if "columns" in steps:
        for name, _, columns in steps["columns"].transformers_:
            kind = "text" if name.startswith("text:") else "category" if name in ("onehot", "ordinal") else None
            if kind:
                for column in [columns] if isinstance(columns, str) else columns:
                    if column in kinds:
                        kinds[column] = kind
    return kinds


class RequestError(ValueError):
    """A request the endpoint refuses: (HTTP status, what is wrong with it)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def parse_rows(body: bytes, kinds: dict[str, str], max_rows: int, max_bytes: int) -> pd.DataFrame:
    """A request body -> a frame of the model's raw columns (extra keys ignored), or RequestError."""
    if len(body) > max_bytes:
        raise RequestError(413, f"request body of {len(body)} bytes is over the limit of {max_bytes}")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the body is not JSON: {exc}") from None
    except RecursionError:  # [[[[...]]]] deeper than the parser goes
        raise RequestError(400, "the body is JSON nested too deeply; send a list of row objects") from None
    rows = payload.get("rows") if isinstance(payload, dict) else payload
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise RequestError(422, 'send a JSON list of row objects, e.g. [{"column": value, ...}], or {"rows": [...]}')
    if not rows:
        raise RequestError(422, "no rows to predict")
    if len(rows) > max_rows:
        raise RequestError(413, f"{len(rows)} rows, more than the {max_rows} one request may hold")
    missing = [c for c in kinds if any(c not in row for row in rows)]
    if missing:
        first = next(i for i, row in enumerate(rows) if missing[0] not in row)
        shown = ", ".join(missing[:10]) + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
        raise RequestError(422, f"row {first} lacks column{'s' if len(missing) > 1 else ''} {shown}; "
                                f"GET /schema lists what a row needs")
    for column, kind in kinds.items():
        for i, row in enumerate(rows):
            value = row[column]
            if value is None:
                continue  # missing: imputed like a gap in training
            if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
                if not (isinstance(value, str) and _is_number(value)):
                    raise RequestError(422, f"row {i}, column {column!r}: expected a number, got {value!r}")
            elif kind != "number" and not isinstance(value, (str, int, float, bool)):
                raise RequestError(422, f"row {i}, column {column!r}: expected a {kind} value, got "
                                        f"{type(value).__name__}")
    frame = pd.DataFrame([{c: row[c] for c in kinds} for row in rows], columns=list(kinds))
    for column, kind in kinds.items():
        if kind == "number":
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


async def read_body(request, max_bytes: int) -> bytes:
    """A request's body, refused (413) as soon as it is over `max_bytes`: by its Content-Length
    before anything is read, else while it streams in; never held whole when it is too large."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, f"request body of {declared} bytes is over the limit of {max_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, f"request body of more than {max_bytes} bytes is over the limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def answers(model, preprocessing, frame: pd.DataFrame) -> list[dict]:
    """One answer per row: {"prediction"} and, for a classifier, {"probabilities": {class: p}}."""
    from rayfit.evaluation.predictions import predict_raw, probabilities

    predicted = predict_raw(model, preprocessing, frame)
    proba = probabilities(predicted, preprocessing.class_names).to_numpy() if preprocessing.class_names else None
    out = []
    for i, value in enumerate(predicted["prediction"]):
        answer: dict[str, Any] = {"prediction": _plain(value)}
        if proba is not None:
            answer["probabilities"] = {str(name): float(p) for name, p in zip(preprocessing.class_names, proba[i])}
        out.append(answer)
    return out


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def build_app(archive: bytes, settings: ServeSettings):
    """The Ray Serve application: one deployment of `settings.replicas` replicas behind FastAPI."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from ray import serve

    api = FastAPI(title="rayfit model")

    @serve.deployment(num_replicas=settings.replicas, ray_actor_options={"num_cpus": 0.5})
    @serve.ingress(api)
    class Predictor:
        def __init__(self, archive: bytes):
            from rayfit.evaluation.fitted import unpack_dir
            from rayfit.evaluation.predictions import load_model_dir

            from rayfit.evaluation.manifest import trusting_unverified

            self._tmp = tempfile.TemporaryDirectory(prefix="rayfit-replica-")
            with trusting_unverified(settings.trust_unverified):  # a replica's own process: said again
                self.model, self.preprocessing = load_model_dir(unpack_dir(archive, Path(self._tmp.name)))
            self.kinds = column_kinds(self.preprocessing) if self.preprocessing.takes_rows else {}

        @api.get("/healthz")
        def healthz(self):
            return {"status": "ok", "model": self.model.name, "task": self.model.task}

        @api.get("/schema")
        def schema(self):
            return {"columns": [{"name": c, "kind": k} for c, k in self.kinds.items()], "task": self.model.task,
                    "target": self.preprocessing.target, "classes": self.preprocessing.class_names,
                    "model": self.model.name, "max_rows": settings.max_rows}

        @api.post("/predict")
        async def predict(self, request: Request):
            if not self.kinds:
                return JSONResponse({"detail": f"this model takes {self.preprocessing.kind} arrays, not rows; "
                                               f"use rayfit predict with an .npz file"}, status_code=422)
            try:
                body = await read_body(request, settings.max_bytes)
                frame = parse_rows(body, self.kinds, settings.max_rows, settings.max_bytes)
                return {"rows": len(frame), **_merge(await self._batched(frame))}
            except RequestError as exc:
                return JSONResponse({"detail": exc.detail}, status_code=exc.status)
            except UserError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=422)

        @serve.batch(max_batch_size=settings.max_batch_size, batch_wait_timeout_s=settings.batch_wait_s)
        async def _batched(self, frames: list[pd.DataFrame]) -> list[list[dict]]:
            """Every waiting request's rows in one prediction, split back per request."""
            everything = answers(self.model, self.preprocessing, pd.concat(frames, ignore_index=True))
            out, start = [], 0
            for frame in frames:
                out.append(everything[start:start + len(frame)])
                start += len(frame)
            return out

    return Predictor.bind(archive)


def _merge(rows: list[dict]) -> dict:
    merged = {"predictions": [r["prediction"] for r in rows]}
    if rows and "probabilities" in rows[0]:
        merged["probabilities"] = [r["probabilities"] for r in rows]
    return merged


def check_port(host: str, port: int) -> None:
    """The port is free to listen on: a taken one is said now, not left to a proxy that never binds."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def app_name(run: str, model: Optional[str] = None) -> str:
    """The Serve application of a run's model: `rayfit-<run>[-<model>]`, a name of the run's own."""
    import re

    name = f"{APP_NAME}-{Path(str(run).rstrip('/')).name}" + (f"-{model}" if model else "")
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:100]


def start_serving(run: str, settings: ServeSettings, own_ray: bool = False) -> str:
    """Deploy the run's model on the Ray session of this process, as an application of the run's
    own name (never replacing one that runs already); the endpoint's base URL. `own_ray`: this
    command started that Ray, and the routes are at the root (/predict); on a Ray others share they
    live under the application's own prefix (/rayfit-<run>/predict)."""
    from ray import serve

    archive = model_archive(run, settings.model)
    name = app_name(run, settings.model)
    running = _serve_running()
    serve.start(http_options={"host": settings.host, "port": settings.port})
    if name in serve.status().applications:
        raise UserError(f"a Serve application named {name} already runs on this cluster (this run served by another "
                        f"command, or an application that is not rayfit's); rayfit serve never replaces it: stop it "
                        f"first (serve.delete({name!r}))")
    host, port = settings.host, settings.port
    if running:  # Serve's proxies listen where whoever started Serve on this cluster said
        from ray.serve.context import _get_global_client

        http = _get_global_client().http_config
        host, port = (settings.host if http.host in ("0.0.0.0", "::") else http.host), http.port
    prefix = "/" if own_ray else f"/{name}"
    if not running:
        _STARTED_SERVE.add(name)
    try:
        serve.run(build_app(archive, settings), name=name, route_prefix=prefix, blocking=False)
    except BaseException:  # Ctrl-C while it came up (it may answer before serve.run returns): ours goes
        stop_serving(run, settings, own_ray)
        raise
    return f"http://{host}:{port}" + ("" if own_ray else prefix)


_STARTED_SERVE: set[str] = set()  # applications whose command started Serve itself on a shared Ray


def _serve_running() -> bool:
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return False
    return True


def stop_serving(run: str, settings: ServeSettings, own_ray: bool = False) -> None:
    """The run's application deleted, and nothing else: on a Ray this command started, Serve with
    it; on a shared Ray where this command started Serve, Serve too once no application is left."""
    from ray import serve

    if own_ray:
        serve.shutdown()
        return
    name = app_name(run, settings.model)
    serve.delete(name)
    if name in _STARTED_SERVE:  # this command started Serve: it goes with the last application
        _STARTED_SERVE.discard(name)
        if not serve.status().applications:
            serve.shutdown()

"""OGC API – Processes Part 1: ``/processes``, ``/processes/{id}``, ``/processes/{id}/execution`` and
``/jobs`` (list with paging, status, results, dismiss).

Inputs are validated in the request — a bad one is a 400 naming the input, and no job is created. Then:

* synchronous (``Prefer: respond-sync``/``wait``, or no preference and a process that deems the input small):
  the job runs in this request and the response carries its outputs (raw: the one requested output with its
  own media type; document, or several outputs: a JSON object of output id → value or link);
* asynchronous (``Prefer: respond-async``, or no preference and big input): the job is queued in PostgreSQL
  and the response is ``201`` with ``Location: /jobs/{id}``; a ``lantu worker`` runs it.
"""

from __future__ import annotations

import json
from datetime import UTC

from flask import Blueprint, Response, request

from lantu.processes.base import Env, InvalidInput
from lantu.processes.catalogue import PROCESS_CLASSES, all_processors, processor
from lantu.processes.jobs import STATUSES, Job, JobStore, Output, worker_name
from lantu.processes.worker import run_job
from lantu.server.context import base_url, lantu
from lantu.server.errors import InvalidParameter, LantuHTTPError, NotFound
from lantu.server.formats import json_response, whole_number
from lantu.server.policy import Denied, allowed, deny_response, identity, require

bp = Blueprint("processes", __name__)
PROCESSES_EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
JSON_OUTPUT_TYPES = ("application/json", "application/geo+json")
MAX_BODY = 64 * 1024 * 1024  # an uploaded site file, base64 encoded


class NoSuchProcess(LantuHTTPError):
    status, code, title = 404, "no-such-process", "No such process"


class NoSuchJob(LantuHTTPError):
    status, code, title = 404, "no-such-job", "No such job"


class ResultNotReady(LantuHTTPError):
    status, code, title = 404, "result-not-ready", "Result not ready"


def _env() -> Env:
    ctx = lantu()
    return Env(ctx.settings, ctx.registry, ctx.pool)


def _store() -> JobStore:
    s = lantu().settings
    return JobStore(lantu().pool, s.job_lease_s, s.job_max_attempts)


def _summary(proc) -> dict:
    m = proc.METADATA
    url = f"{base_url()}/processes/{m['id']}"
    return {"id": m["id"], "version": m["version"], "title": m["title"]["zh"] + " (" + m["title"]["en"] + ")",
            "description": m["description"]["zh"] + " " + m["description"]["en"], "keywords": m.get("keywords", []),
            "jobControlOptions": m["jobControlOptions"], "outputTransmission": m["outputTransmission"],
            "links": [{"rel": "self", "type": "application/json", "title": "process description", "href": url},
                      {"rel": "http://www.opengis.net/def/rel/ogc/1.0/execute", "type": "application/json",
                       "title": "execute", "href": f"{url}/execution"}]}


@bp.get("/processes")
def processes_list() -> Response:
    return json_response({"processes": [_summary(p) for p in all_processors()],
                          "links": [{"rel": "self", "type": "application/json", "href": f"{base_url()}/processes"}]})


def _processor(pid: str):
    if pid not in PROCESS_CLASSES:
        raise NoSuchProcess(f"no process {pid[:60]!r}; see {base_url()}/processes")
    return processor(pid)


@bp.get("/processes/<pid>")
def process_description(pid: str) -> Response:
    proc = _processor(pid)
    doc = _summary(proc)
    doc["inputs"] = proc.METADATA["inputs"]
    doc["outputs"] = proc.METADATA["outputs"]
    if "example" in proc.METADATA:
        doc["example"] = proc.METADATA["example"]
    return json_response(doc)


def _execute_request(pid: str) -> tuple[dict, dict | None, str]:
    if request.content_length and request.content_length > MAX_BODY:
        raise InvalidParameter(f"the request body is larger than {MAX_BODY // 2**20} MiB", locator="body")
    try:
        body = json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameter(f"the request body is not JSON ({str(exc)[:80]})", locator="body") from None
    if not isinstance(body, dict):
        raise InvalidParameter("the request body must be a JSON object with `inputs`", locator="body")
    inputs = body.get("inputs", {})
    if not isinstance(inputs, dict):
        raise InvalidParameter("`inputs` must be an object of input id → value", locator="inputs")
    outputs = body.get("outputs")
    known = set(processor(pid).METADATA["outputs"])
    if outputs is not None:
        if not isinstance(outputs, dict) or not outputs or not set(outputs) <= known:
            raise InvalidParameter(f"`outputs` must name outputs of {pid}: {', '.join(sorted(known))}",
                                   locator="outputs")
    response = body.get("response", "raw")
    if response not in ("raw", "document"):
        raise InvalidParameter("`response` must be raw or document", locator="response")
    return inputs, outputs, response


def _preference() -> str | None:
    prefer = request.headers.get("Prefer", "").replace(" ", "").lower()
    if "respond-async" in prefer:
        return "async"
    if "respond-sync" in prefer or "wait" in prefer:
        return "sync"
    return None


@bp.post("/processes/<pid>/execution")
def execute(pid: str) -> Response:
    proc = _processor(pid)
    inputs, outputs_wanted, response = _execute_request(pid)
    env = _env()
    try:
        normalised = proc.validate(inputs, env)
    except InvalidInput as exc:
        raise InvalidParameter(f"input {exc.name}: {exc.message}", locator=exc.name) from None
    for action, layer_ids in proc.layers_needed(normalised, env.registry).items():
        try:
            require(layer_ids, action)
        except Denied as exc:
            return deny_response("OGCAPI", exc.status, exc.text)
    normalised = proc.restrict(normalised, lambda action, lid: allowed(lid, action))
    preference = _preference()
    mode = preference or ("async" if proc.prefers_async(normalised) else "sync")
    store = _store()
    job = store.create(pid, normalised, mode=mode, outputs_wanted=outputs_wanted, response=response,
                       who=identity().name)
    applied = {"Preference-Applied": "respond-async" if mode == "async" else "respond-sync"} if preference else {}
    if mode == "async":
        return json_response(status_info(job), headers={"Location": job_url(job.id), **applied}, status=201)
    status = run_job(store, env, job, worker_name())
    job = store.get(job.id)
    if status != "successful":
        return json_response({"type": PROCESSES_EXC + "job-failed", "title": "Process failed", "status": 500,
                              "detail": job.message, "jobID": job.id}, mimetype="application/problem+json",
                             status=500, headers={"Location": job_url(job.id)})
    return _results_response(job, store.outputs(job.id), headers={"Location": job_url(job.id), **applied})


def job_url(job_id: str) -> str:
    return f"{base_url()}/jobs/{job_id}"


def _iso(value) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def status_info(job: Job) -> dict:
    url = job_url(job.id)
    links = [{"rel": "self", "type": "application/json", "title": "job status", "href": url}]
    if job.status == "successful":
        links.append({"rel": "http://www.opengis.net/def/rel/ogc/1.0/results", "type": "application/json",
                      "title": "results", "href": f"{url}/results"})
    links.append({"rel": "up", "type": "application/json", "title": "job list", "href": f"{base_url()}/jobs"})
    doc = {"type": "process", "processID": job.process_id, "jobID": job.id, "status": job.status,
           "message": job.message, "progress": job.progress, "created": _iso(job.created),
           "started": _iso(job.started), "finished": _iso(job.finished), "updated": _iso(job.updated),
           "attempts": job.attempts, "links": links}
    if job.error:
        doc["exception"] = job.error
    return doc


@bp.get("/jobs")
def jobs_list() -> Response:
    limit_text, offset_text = request.args.get("limit", "20"), request.args.get("offset", "0")
    if not whole_number(limit_text) or not 1 <= int(limit_text) <= 1000:
        raise InvalidParameter("limit must be a whole number from 1 to 1000", locator="limit")
    if not whole_number(offset_text):
        raise InvalidParameter("offset must be a whole number", locator="offset")
    statuses = [s for v in request.args.getlist("status") for s in v.split(",") if s]
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise InvalidParameter(f"status must be among {', '.join(STATUSES)}", locator="status")
    pids = [p for v in request.args.getlist("processID") for p in v.split(",") if p]
    limit, offset = int(limit_text), int(offset_text)
    jobs, total = _store().list(limit=limit, offset=offset, statuses=statuses or None, process_ids=pids or None,
                                who=None if identity().is_admin else identity().name)

    def page(off: int) -> str:
        extra = "".join(f"&status={s}" for s in statuses) + "".join(f"&processID={p}" for p in pids)
        return f"{base_url()}/jobs?limit={limit}&offset={off}{extra}"

    links = [{"rel": "self", "type": "application/json", "href": page(offset)}]
    if offset + limit < total:
        links.append({"rel": "next", "type": "application/json", "href": page(offset + limit)})
    if offset > 0:
        links.append({"rel": "prev", "type": "application/json", "href": page(max(0, offset - limit))})
    return json_response({"jobs": [status_info(j) for j in jobs], "numberMatched": total,
                          "numberReturned": len(jobs), "links": links})


def _job(job_id: str) -> Job:
    job = _store().get(job_id)
    if job is None or not (identity().is_admin or job.who == identity().name):  # others' jobs do not exist
        raise NoSuchJob(f"no job {job_id[:60]!r}")
    return job


@bp.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    return json_response(status_info(_job(job_id)))


@bp.delete("/jobs/<job_id>")
def job_dismiss(job_id: str) -> Response:
    job = _job(job_id)
    if job.status in ("failed", "dismissed"):
        return json_response(status_info(job))
    dismissed = _store().dismiss(job.id)
    return json_response(status_info(dismissed))


@bp.get("/jobs/<job_id>/results")
def job_results(job_id: str) -> Response:
    job = _job(job_id)
    if job.status == "failed":
        return json_response(job.error or {"type": PROCESSES_EXC + "job-failed", "title": "Job failed",
                                           "detail": job.message}, mimetype="application/problem+json", status=500)
    if job.status != "successful":
        raise ResultNotReady(f"job {job.id} is {job.status}; results exist once it is successful")
    return _results_response(job, _store().outputs(job.id))


@bp.get("/jobs/<job_id>/results/<output_id>")
def job_result(job_id: str, output_id: str) -> Response:
    job = _job(job_id)
    if job.status != "successful":
        raise ResultNotReady(f"job {job.id} is {job.status}; results exist once it is successful")
    found = _store().outputs(job.id, output_id)
    if not found:
        raise NotFound(f"job {job.id} has no output {output_id[:60]!r}")
    return _raw(found[0])


def _raw(out: Output, headers: dict | None = None) -> Response:
    resp = Response(out.body, content_type=out.media_type, headers=headers or {})  # as stored: no second charset
    if out.media_type == "application/pdf":
        resp.headers["Content-Disposition"] = f'inline; filename="{out.output_id}.pdf"'
    return resp


def _results_response(job: Job, outputs: list[Output], headers: dict | None = None) -> Response:
    wanted = job.outputs_wanted
    chosen = [o for o in outputs if wanted is None or o.output_id in wanted]
    if job.response == "raw" and len(chosen) == 1:
        return _raw(chosen[0], headers)
    doc = {}
    for out in chosen:
        if out.media_type.split(";")[0] in JSON_OUTPUT_TYPES:
            doc[out.output_id] = json.loads(out.body)
        else:
            doc[out.output_id] = {"href": f"{job_url(job.id)}/results/{out.output_id}", "type": out.media_type}
    return json_response(doc, headers=headers)

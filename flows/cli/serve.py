"""``lcpipe serve``: the train, classify and reprocess deployments, served from one process.

The alternative to ``prefect.yaml`` + a work pool + a worker (docs/deployment.md):
one long-lived process registers the three deployments with the Prefect server
(same names and parameters as ``prefect.yaml``) and runs what is triggered or
scheduled, each flow run in a subprocess. It needs a real server
(``PREFECT_API_URL``): against Prefect's temporary ephemeral API nothing could
trigger the deployments.
"""

import argparse

HELP = ("serve the train, classify and reprocess flows as Prefect deployments "
        "(needs a Prefect server)")

#: The deployments of ``prefect.yaml``: name -> flow module, flow function, description and
#: default parameters (placeholder paths to replace per run; ``settings`` at its defaults).
#: ``tests/deploy`` checks that ``prefect.yaml`` says the same.
DEPLOYMENTS: dict[str, dict] = {
    "train": {
        "module": "flows.train", "flow": "train",
        "description": "Train and compare the forest, the CNN and the robust-PCA classifier; "
                       "write reports and a model bundle.",
        "parameters": {"data": "/path/to/lightcurves.parquet", "labels": "/path/to/labels.csv",
                       "output": "/path/to/run_dir"},
    },
    "classify": {
        "module": "flows.classify", "flow": "classify",
        "description": "Classify light curves with every model of a bundle (forest, CNN, "
                       "robust-PCA distances).",
        "parameters": {"model": "crts", "data": "/path/to/lightcurves.parquet",
                       "output": "/path/to/predictions.parquet"},
    },
    "reprocess": {
        "module": "flows.reprocess", "flow": "reprocess",
        "description": "Reclassify what is new in a growing survey folder.",
        "parameters": {"survey": "/path/to/survey", "model": "crts",
                       "output": "/path/to/reprocess_output"},
    },
}
TAGS = ["lcpipe"]
TIMEZONE = "UTC"

NO_SERVER = ("no Prefect server: start one with `prefect server start --host 127.0.0.1` and "
             "set PREFECT_API_URL=http://127.0.0.1:4200/api (serving against Prefect's "
             "temporary ephemeral API is useless)")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reprocess-cron", default=None, metavar="CRON",
                   help="schedule of the reprocess deployment, a cron expression in UTC, "
                        "e.g. '0 6 * * *' (default: no schedule, runs only when triggered)")
    g = p.add_argument_group("default parameters of the reprocess deployment "
                             "(default: the placeholders of prefect.yaml)")
    g.add_argument("--survey", default=None, metavar="DIR", help="the survey folder that grows")
    g.add_argument("--model", default=None, metavar="BUNDLE",
                   help="bundle folder, a run folder of `lcpipe train`, or 'crts'")
    g.add_argument("--output", default=None, metavar="DIR",
                   help="output folder of the reclassification")
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="at most N flow runs at a time (default: no limit)")


def deployment_parameters(args: argparse.Namespace) -> dict[str, dict]:
    """Default parameters of each deployment: ``DEPLOYMENTS`` with the reprocess options
    given (paths made absolute: a run starts later, maybe elsewhere)."""
    from pathlib import Path

    from models.bundle import SHIPPED_BUNDLES, load_bundle

    params = {name: dict(d["parameters"]) for name, d in DEPLOYMENTS.items()}
    rep = params["reprocess"]
    if args.survey is not None:
        rep["survey"] = str(Path(args.survey).resolve())
    if args.output is not None:
        rep["output"] = str(Path(args.output).resolve())
    if args.model is not None:
        load_bundle(args.model)  # not a bundle: one line now, not at the first run
        rep["model"] = (args.model if args.model in SHIPPED_BUNDLES
                        else str(Path(args.model).resolve()))
    return params


def cron_schedule(cron: str):
    """A Prefect cron schedule in UTC; a bad expression is a :class:`ConfigError`."""
    from prefect.schedules import Cron

    from pipeline.errors import ConfigError

    try:
        return Cron(cron, timezone=TIMEZONE)
    except ValueError as exc:
        raise ConfigError(f"--reprocess-cron: {exc}") from exc


def build_deployments(params: dict[str, dict], schedule=None) -> list:
    """The three ``RunnerDeployment`` objects that ``run`` serves (``schedule``: the
    reprocess deployment's, or None)."""
    import importlib

    from prefect.types.entrypoint import EntrypointType

    out = []
    for name, d in DEPLOYMENTS.items():
        flow = getattr(importlib.import_module(d["module"]), d["flow"])
        out.append(flow.to_deployment(
            name=name, parameters=params[name], description=d["description"], tags=TAGS,
            schedules=[schedule] if name == "reprocess" and schedule is not None else None,
            entrypoint_type=EntrypointType.MODULE_PATH))  # runs from any directory
    return out


def run(args: argparse.Namespace) -> int:
    from flows._runtime import prefect_environment
    from pipeline.errors import ConfigError

    prefect_environment()
    params = deployment_parameters(args)  # bad options: one line, before anything else
    schedule = cron_schedule(args.reprocess_cron) if args.reprocess_cron else None
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url  # PREFECT_API_URL, from the environment or profile
    if not url:
        raise ConfigError(NO_SERVER)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        exc = client.api_healthcheck()
    if exc is not None:
        raise ConfigError(f"no Prefect server answers at PREFECT_API_URL={url} "
                          f"({type(exc).__name__}: {exc})")
    deployments = build_deployments(params, schedule)
    from prefect import serve

    serve(*deployments, limit=args.limit)
    return 0

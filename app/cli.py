"""The `chatflow` command (docs/api.md, "Command line"). Each command is a few lines over the app."""
import sys
from pathlib import Path

import click
from app.services import services

REPO_PROCESSES = Path(__file__).resolve().parent.parent / "processes"


def _bpmn_files(paths) -> list[tuple[str, bytes]]:
    files = []
    for raw in paths:
        path = Path(raw)
        found = sorted(path.glob("*.bpmn")) if path.is_dir() else [path]
        if path.is_dir() and not found:
            raise click.ClickException(f"{raw}: no .bpmn files in this folder")
        for f in found:
            if not f.is_file():
                raise click.ClickException(f"{f}: no such file")
            files.append((str(f), f.read_bytes()))
    return files


@click.group()
def main():
    """Chatflow: chat center whose chat lifecycle and chat actions are BPMN processes."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Seed what demo data is missing (never a new version of a deployed "
              "process) and print the tokens to use.")
def serve(host, port, demo):
    """Run the web app (and, with no REDIS_URL, its in-process worker)."""
    from werkzeug.serving import run_simple

    from app import create_app
    app = create_app()
    if demo:
        from app.demo import seed
        with app.app_context():
            for line in seed(app, REPO_PROCESSES):
                click.echo(line)
    if demo:
        click.echo(f"Website chat demo, a pretend shop page to chat from: http://{host}:{port}/demo")
    click.echo(f"Chatflow on http://{host}:{port}  (jobs: {'RQ' if app.config['REDIS_URL'] else 'in-process'})")
    run_simple(host, port, app, threaded=True, use_reloader=False)


@main.command()
def worker():
    """Run an RQ worker with its scheduler, plus the sweep loop with heartbeats (needs REDIS_URL).

    It rides out Redis and database outages; SIGTERM ends it after the current job.
    """
    from app import create_app
    from app.worker import run
    app = create_app(start_jobs=False)
    if not app.config["REDIS_URL"]:
        raise click.ClickException("set REDIS_URL: without it `chatflow serve` runs jobs in-process")
    run(app)


@main.command()
@click.argument("paths", nargs=-1, required=True)
def deploy(paths):
    """Validate and deploy BPMN files or folders of them."""
    from app import create_app
    from app.bpmn.errors import BpmnRefused
    from app.extensions import db
    app = create_app(start_jobs=False)
    with app.app_context():
        try:
            result = services(app).engine.deploy(_bpmn_files(paths))
        except BpmnRefused as e:
            for problem in e.problems:
                click.echo(str(problem), err=True)
            sys.exit(1)
        db.session.commit()
    for p in result:
        click.echo(f"{p['key']} version {p['version']} {'deployed' if p['new'] else 'unchanged'}")


@main.command()
@click.argument("paths", nargs=-1, required=True)
def check(paths):
    """Validate BPMN files without deploying; prints `file:line element_id problem`."""
    from app.bpmn.errors import BpmnRefused
    from app.bpmn.store import validate_all
    from app.catalogue import operation_names
    try:
        loaded = validate_all(_bpmn_files(paths), operation_names())
    except BpmnRefused as e:
        for problem in e.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    for f in loaded:
        click.echo(f"{f.filename}: ok ({', '.join(p.key for p in f.processes)})")


@main.group()
def db():
    """Database schema."""


@db.command("upgrade")
def db_upgrade():
    """Apply every pending migration."""
    from app.config import from_env
    from app.migrate import upgrade
    upgrade(from_env()["SQLALCHEMY_DATABASE_URI"])
    click.echo("database is up to date")


if __name__ == "__main__":
    main()

"""`chatflow check` and `chatflow deploy`, run as real processes against the test database."""
import os
import shutil
import socket
import subprocess
import sys

import pytest
from sqlalchemy import select

from conftest import CORPUS, DATA, ROOT, Api
from app.catalogue import operation_names
from app.extensions import db
from app.models import Channel, Queue

LOADER = DATA / "loader"


@pytest.fixture
def run(db_url):
    def run(*args):
        env = {**os.environ, "DATABASE_URL": db_url}
        env.pop("CHATFLOW_BOOTSTRAP_ADMIN_TOKEN", None)
        return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
    return run


def test_check_bad_file_exits_1_with_problem_lines(run):
    path = LOADER / "bad.bpmn"
    result = run("check", path)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}:7 wait empty timer definition: give a timeDuration, timeDate or timeCycle",
        f"{path}:9 f2 sequence flow targetRef 'nowhere' names no element of process 'LoaderBad'",
    ]


def test_check_good_file_exits_0(run):
    path = LOADER / "good.bpmn"
    result = run("check", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: ok (LoaderGood)"
    assert "Traceback" not in result.stderr


def test_check_reports_every_file_of_a_batch(run):
    corpus_file = CORPUS / "miwg" / "ref_A.2.1_bonita.bpmn"
    result = run("check", LOADER / "good.bpmn", corpus_file)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{corpus_file}:2 Bpmn_Definitions_")
    assert line.endswith("nothing to deploy")


def test_check_refuses_unknown_operation(run, tmp_path):
    xml = (LOADER / "good.bpmn").read_text().replace(
        '<bpmn:scriptTask id="mark" name="Mark"><bpmn:script>done = True</bpmn:script></bpmn:scriptTask>',
        '<bpmn:serviceTask id="mark"><bpmn:extensionElements>'
        '<spiffworkflow:serviceTaskOperator xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" '
        'id="no_such_op"><spiffworkflow:parameters /></spiffworkflow:serviceTaskOperator>'
        '</bpmn:extensionElements></bpmn:serviceTask>')
    path = tmp_path / "ops.bpmn"
    path.write_text(xml)
    result = run("check", path)
    assert result.returncode == 1
    known = ", ".join(sorted(operation_names()))
    assert result.stderr.splitlines() == [f"{path}:10 mark service task calls unknown operation 'no_such_op' "
                                          f"(known: {known})"]


def test_check_missing_path_is_an_error_not_a_traceback(run, tmp_path):
    result = run("check", tmp_path / "nope.bpmn")
    assert result.returncode != 0
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


def test_deploy_twice_is_unchanged_and_a_change_makes_version_2(app, run, tmp_path):
    folder = tmp_path / "processes"
    folder.mkdir()
    shutil.copy(LOADER / "good.bpmn", folder / "good.bpmn")

    first = run("deploy", folder)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["LoaderGood version 1 deployed"]

    second = run("deploy", folder)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == ["LoaderGood version 1 unchanged"]

    path = folder / "good.bpmn"
    path.write_text(path.read_text().replace("PT5M", "PT10M"))
    third = run("deploy", folder)
    assert third.returncode == 0, third.stderr
    assert third.stdout.splitlines() == ["LoaderGood version 2 deployed"]
    api = Api(app)
    started = api.post("/api/processes/LoaderGood/instances", {"data": {}}).get_json()
    assert started["version"] == 2


def test_deploy_bad_file_exits_1_and_deploys_nothing(app, run, tmp_path):
    folder = tmp_path / "processes"
    folder.mkdir()
    shutil.copy(LOADER / "good.bpmn", folder / "a_good.bpmn")
    shutil.copy(LOADER / "bad.bpmn", folder / "b_bad.bpmn")
    result = run("deploy", folder)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == (f"{folder / 'b_bad.bpmn'}:7 wait empty timer definition: "
                                             "give a timeDuration, timeDate or timeCycle")

    assert Api(app).post("/api/processes/LoaderGood/instances", {"data": {}}).status_code == 404


def test_deploy_empty_folder_is_an_error(run, tmp_path):
    result = run("deploy", tmp_path)
    assert result.returncode != 0
    assert "no .bpmn files" in result.stderr


def _serve_demo(db_url) -> list[str]:
    """Start `chatflow serve --demo` as a real process, read what it seeded, stop it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1"}
    for name in ("REDIS_URL", "CHATFLOW_BOOTSTRAP_ADMIN_TOKEN"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--demo", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:  # the seeding is done once it says where it serves
            lines.append(line.rstrip("\n"))
            if line.startswith("Chatflow on http://"):
                break
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert lines and lines[-1].startswith("Chatflow on http://"), "\n".join(lines)
    return lines


def test_demo_restart_keeps_a_changed_lifecycle_the_latest(app, run, tmp_path, db_url):
    first = _serve_demo(db_url)
    assert "process ChatLifecycle version 1 (new)" in first
    assert "process ChatLifecycleEscalation version 1 (new)" in first      # every shipped process
    (overflow,) = [line for line in first if line.startswith("queue 'Overflow'")]  # the variant's OverflowQueue

    changed = tmp_path / "ChatLifecycle.bpmn"
    changed.write_text((ROOT / "processes" / "ChatLifecycle.bpmn").read_text().replace(
        "</bpmn:definitions>", "<!-- changed by an analyst -->\n</bpmn:definitions>"))
    deployed = run("deploy", changed)
    assert deployed.stdout.splitlines() == ["ChatLifecycle version 2 deployed"], deployed.stderr

    second = _serve_demo(db_url)
    assert "process ChatLifecycle version 2 (already deployed, kept)" in second
    assert "process CreateCaseFromChat version 1 (already deployed, kept)" in second
    assert overflow in second                                              # seeded once, kept
    with app.app_context():
        from app.bpmn.store import latest_version
        latest = latest_version("ChatLifecycle")
        assert (latest.version, latest.xml) == (2, changed.read_text())
        assert sorted(db.session.scalars(select(Queue.name))) == ["Demo support", "Overflow"]  # each once
        # The website chat demo: one web channel on the demo queue, whose widget /demo shows.
        web = db.session.scalars(select(Channel).where(Channel.provider == "web")).one()
        assert web.queue.name == "Demo support" and web.active and web.widget_key
    for output in (first, second):
        assert any(line.endswith("/demo") and line.startswith("Website chat demo") for line in output), output
    page = app.test_client().get("/demo")
    assert page.status_code == 200 and f'src="/widget/{web.widget_key}.js"'.encode() in page.data

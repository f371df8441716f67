"""The backup drill, here, against the embedded database: the README's walk-through runs, deploy/backup/
backup.sh dumps every database while the services run, the services stop, the databases are lost,
deploy/backup/restore.sh brings them back, and the services started again serve the walk-through's
data under the same ids and go on working.

mongodump and mongorestore cannot be installed on this machine: `python -m ops.backup` stands in for
them (their directory format, written with pymongo's bson; see its docstring and deploy/README.md,
"Backups and restore", for what only the real tools do). The scripts are the ones the CronJob and the
compose service run, word for word; only the two commands and the --oplog options differ."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from backbone.database import mongo_client
from tests.helpers import Client, wait_for
from tests.test_make_run import readme_walkthrough

ROOT = Path(__file__).resolve().parent.parent
BACKUP = ROOT / "deploy" / "backup"
# What the walk-through writes, per service database: the collections whose ids must come back.
DOMAIN = {"partners": ["partners", "agreements", "offerings"], "scheduling": ["venues", "sessions", "offerings"],
          "registration": ["officials", "sessions", "registrations", "units"], "notifications": ["notices"]}


@pytest.fixture(scope="module")
def mongo(tmp_path_factory):
    """A database server of the drill's own: the dump takes every database on it, as on a replica set
    that holds only trainops."""
    from devstack.mongo import EmbeddedMongo
    folder = tmp_path_factory.mktemp("drill-mongo")
    server = EmbeddedMongo(storage_path=folder / "data", log_path=str(folder / "secantusd.log"))
    server.start()
    yield server.uri
    server.stop()


@pytest.fixture(scope="module")
def smtp_sink(tmp_path_factory):
    """A mail server of the drill's own: the walk-through looks for the first mail to its official."""
    from devstack.smtp_sink import SmtpSink
    folder = tmp_path_factory.mktemp("drill-mail")
    sink = SmtpSink(directory=str(folder), log_path=str(folder.parent / "drill-smtp.log"))
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def tools(tmp_path):
    """`mongodump` and `mongorestore` on the PATH: this repository's stand-ins (ops/backup.py)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool, command in (("mongodump", "dump"), ("mongorestore", "restore")):
        path = folder / tool
        path.write_text('#!/bin/sh\nexec "{}" -m ops.backup {} "$@"\n'.format(sys.executable, command))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return dict(os.environ, PATH="{}:{}".format(folder, os.environ["PATH"]), PYTHONPATH=str(ROOT))


def run_script(script, env, *args):
    done = subprocess.run(["bash", str(BACKUP / script), *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def walk_through(gateway_url, token, mail_dir, cwd):
    """The README's walk-through against this gateway; returns the ids it made."""
    script = readme_walkthrough().replace("http://127.0.0.1:8000", gateway_url)
    script = script.replace("$(cat var/dev-operator-token)", token).replace("var/mail/", str(mail_dir) + "/")
    script += '\necho; echo "IDS partner=$PARTNER offering=$OFFERING venue=$VENUE session=$SESSION official=$OFFICIAL key=$KEY"\n'
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"status": "confirmed"' in done.stdout and '"status": "sent"' in done.stdout
    line = next(line for line in done.stdout.splitlines() if line.startswith("IDS "))
    return dict(part.split("=", 1) for part in line.split()[1:])


def ids(client, prefix):
    return {(service, collection): sorted(d["_id"] for d in client["{}_{}".format(prefix, service)][collection].find({}, {"_id": 1}))
            for service, collections in DOMAIN.items() for collection in collections}


def test_dump_lose_restore_and_the_walkthrough_is_back_with_the_same_ids(
        system, runner_factory, app_config, smtp_sink, tools, tmp_path):
    from devstack import seed
    operator = Client(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"])
    seed.load(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"], say=lambda _: None)  # as `make run` does
    made = walk_through(app_config["GATEWAY_URL"], app_config["OPERATOR_TOKEN"], smtp_sink.directory, tmp_path)
    registration_id = operator.get("/sessions/{}/registrations".format(made["session"])).json()["items"][0]["id"]
    client = mongo_client(app_config["MONGO_URI"])
    prefix = app_config["DATABASE_PREFIX"]
    before = ids(client, prefix)
    assert all(before[key] for key in before if key != ("registration", "units")), before
    mails = len(list(smtp_sink.directory.glob("*.eml")))

    # Two older dumps and one that died half-way are there already: the retention keeps two.
    backups = tmp_path / "backups"
    for old in ("20250101T000000Z", "20250102T000000Z"):
        (backups / old).mkdir(parents=True)
    env = dict(tools, MONGO_URI=app_config["MONGO_URI"], BACKUP_DIR=str(backups), BACKUP_KEEP="2",
               BACKUP_DUMP_OPTIONS="", RESTORE_OPTIONS="")
    said = run_script("backup.sh", env)
    [dump] = [p for p in backups.iterdir() if p.name not in ("20250101T000000Z", "20250102T000000Z")]
    assert sorted(p.name for p in backups.iterdir()) == ["20250102T000000Z", dump.name]
    assert "removed 20250101T000000Z" in said
    for service, collections in DOMAIN.items():
        for collection in collections:
            assert (dump / "{}_{}".format(prefix, service) / (collection + ".bson.gz")).exists()

    # The disaster: the services stop and every database is lost.
    system.stop()
    for name in client.list_database_names():
        if name.startswith(prefix + "_"):
            client.drop_database(name)
    assert not [n for n in client.list_database_names() if n.startswith(prefix + "_")]

    # The restore procedure: with the services stopped, restore.sh from the newest dump, start them.
    run_script("restore.sh", env, str(dump))
    assert ids(client, prefix) == before
    from gateway.service import GatewayService
    from services.notifications.service import NotificationsService
    from services.partners.service import PartnersService
    from services.registration.service import RegistrationService
    from services.scheduling.service import SchedulingService
    runner_factory(PartnersService, SchedulingService, RegistrationService, NotificationsService,
                   GatewayService).start()

    # The walk-through's records answer under the same ids, the partner's key still works...
    partner = Client(app_config["GATEWAY_URL"], made["key"])
    assert partner.get("/partners/{}".format(made["partner"])).json()["id"] == made["partner"]
    assert partner.get("/offerings/{}".format(made["offering"])).json()["id"] == made["offering"]
    assert operator.get("/venues/{}".format(made["venue"])).json()["id"] == made["venue"]
    session = operator.get("/sessions/{}".format(made["session"])).json()
    assert session["id"] == made["session"] and session["seats_taken"] == 1
    assert operator.get("/officials/{}".format(made["official"])).json()["email"] == "anh.nguyen@example.gov.vn"
    registration = operator.get("/registrations/{}".format(registration_id)).json()
    assert registration["status"] == "confirmed" and registration["official_id"] == made["official"]
    [notice] = [n for n in operator.get("/notifications?official_id={}".format(made["official"])).json()["items"]
                if n["channel"] == "email"]
    assert notice["status"] == "sent"

    # ...and the system goes on: the next official takes the next seat and hears of it, nothing is
    # sent twice (the handled events came back with the data).
    other = operator.post("/officials", {"full_name": "Trần Văn Bình", "email": "binh.tran@example.gov.vn", "phone": "0912 345 678",
                                         "unit_code": "26740", "audience_group": "ward_commune"})
    assert other.status_code == 201, other.text
    second = operator.post("/sessions/{}/registrations".format(made["session"]), {"official_id": other.json()["id"]})
    assert second.json()["status"] == "confirmed", second.text
    wait_for(lambda: any(b"binh.tran@example.gov.vn" in p.read_bytes() for p in smtp_sink.directory.glob("*.eml")))
    assert operator.get("/sessions/{}".format(made["session"])).json()["seats_taken"] == 2
    assert len(list(smtp_sink.directory.glob("*.eml"))) == mails + 1
    client.close()


def test_restore_refuses_a_dump_that_did_not_finish(tmp_path, tools):
    partial = tmp_path / ".partial-20261206T190000Z"
    partial.mkdir()
    done = subprocess.run(["bash", str(BACKUP / "restore.sh"), str(partial)], capture_output=True, text=True,
                          env=dict(tools, MONGO_URI="mongodb://127.0.0.1:1/"), timeout=30)
    assert done.returncode == 1 and "did not finish" in done.stderr


def test_the_stand_in_refuses_the_options_only_the_real_tools_have(tmp_path, tools):
    # Not silently ignored: the drill must not look as if it proved a point-in-time dump.
    for tool, option in (("mongodump", "--oplog"), ("mongorestore", "--oplogReplay")):
        done = subprocess.run([tool, "--uri=mongodb://127.0.0.1:1/", "--out={}".format(tmp_path),
                               "--dir={}".format(tmp_path), option], env=tools, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 2 and option in done.stderr, done.stderr

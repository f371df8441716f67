"""The embedded dev stack's own pieces, against the real things, under eventlet like every test."""
import logging
import smtplib
from email.message import EmailMessage
from unittest.mock import ANY

import eventlet
import pymongo
import pytest
import requests
from pymongo.errors import ServerSelectionTimeoutError

from devstack.mongo import EmbeddedMongo
from devstack.sms_gateway import SmsGateway, segments
from devstack.smtp_sink import SmtpSink

LEARNER = "nguyen.van.anh@example.vn"
PHONE = "+84901234567"


def test_embedded_mongo_round_trips_a_document_and_stops():
    with EmbeddedMongo() as server:
        client = pymongo.MongoClient(server.uri)
        client.devstack.learners.insert_one({"_id": 1, "name": "Nguyễn Văn Ánh"})
        assert client.devstack.learners.find_one({"_id": 1})["name"] == "Nguyễn Văn Ánh"
        client.close()
    with pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=300) as client:
        with pytest.raises(ServerSelectionTimeoutError):
            client.admin.command("ping")


@pytest.fixture
def sink(tmp_path):
    with SmtpSink(directory=tmp_path / "mail") as sink:
        yield sink


def confirmation():
    message = EmailMessage()
    message["From"] = "Trung tâm Chuyển đổi số TP.HCM <daotao-ai@trainops.local>"
    message["To"] = LEARNER
    message["Subject"] = "Xác nhận đăng ký: Ứng dụng AI trong công vụ"
    message.set_content("Chào anh Ánh,\nĐăng ký của anh đã được xác nhận.\n")
    return message


def send(sink, message):
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as smtp:
        smtp.send_message(message)


def test_smtp_sink_keeps_a_utf8_message_as_a_file(capfd, tmp_path):
    # Started here, not by the fixture: only then does the server's stderr go to capfd.
    with SmtpSink(directory=tmp_path / "mail") as sink:
        send(sink, confirmation())
    [received] = sink.messages()
    assert received["Subject"] == "Xác nhận đăng ký: Ứng dụng AI trong công vụ"
    assert received.get_content() == "Chào anh Ánh,\nĐăng ký của anh đã được xác nhận.\n"
    assert received["X-Envelope-To"] == LEARNER
    assert [path.suffix for path in sink.directory.iterdir()] == [".eml"]
    logged = capfd.readouterr().err
    assert "n***@example.vn" in logged and LEARNER not in logged


@pytest.mark.parametrize("code", [451, 550])
def test_smtp_sink_refuses_recipients_until_it_accepts_again(sink, code):
    sink.refuse(code)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(sink, confirmation())
    assert refused.value.recipients == {LEARNER: (code, ANY)}
    sink.accept()
    send(sink, confirmation())
    assert len(sink.messages()) == 1


def test_smtp_sink_quotes_the_refused_address_as_real_servers_do(sink):
    sink.refuse(550, "5.1.1 <{rcpt}>: Recipient address rejected: User unknown")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(sink, confirmation())
    code, reply = refused.value.recipients[LEARNER]
    assert (code, reply.decode()) == (550, "5.1.1 <{}>: Recipient address rejected: User unknown".format(LEARNER))


def test_smtp_sink_refusing_after_rcpt_answers_the_data(sink):
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as smtp:
        smtp.ehlo()
        smtp.mail("daotao-ai@trainops.local")
        smtp.rcpt(LEARNER)
        sink.refuse(451)
        assert smtp.data(confirmation().as_bytes())[0] == 451
    assert sink.messages() == []


def test_two_smtp_sinks_run_side_by_side(tmp_path):
    # In one thread each they could not, under eventlet: see devstack.smtp_sink.
    with SmtpSink(directory=tmp_path / "a") as first, SmtpSink(directory=tmp_path / "b") as second:
        send(first, confirmation())
        send(second, confirmation())
        assert len(first.messages()) == len(second.messages()) == 1


@pytest.fixture
def gateway(tmp_path):
    with SmsGateway(directory=tmp_path / "sms") as gateway:
        yield gateway


def test_sms_gateway_records_what_it_accepts(gateway, caplog):
    caplog.set_level(logging.INFO, logger="devstack")
    text = "Lịch học: 08:00 thứ Hai tại Trung tâm"
    answer = requests.post(gateway.url, json={"to": PHONE, "text": text, "sender": "TRAINOPS"}, timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"id": ANY, "status": "accepted", "segments": 1}
    [message] = gateway.messages()
    assert message == {"id": answer.json()["id"], "received_at": ANY, "to": PHONE, "sender": "TRAINOPS",
                       "text": text, "segments": 1}
    assert requests.get(gateway.url, timeout=5).json() == [message]
    assert "+8490***567" in caplog.text and PHONE not in caplog.text


def test_sms_gateway_answers_503_while_failing(gateway):
    gateway.fail()
    sms = {"to": PHONE, "text": "Nhắc lịch học"}
    assert requests.post(gateway.url, json=sms, timeout=5).status_code == 503
    gateway.recover()
    assert requests.post(gateway.url, json=sms, timeout=5).status_code == 200
    assert len(gateway.messages()) == 1


@pytest.mark.parametrize("body", [
    b"{not json",
    b'{"text": "no recipient"}',
    b'{"to": "+84901234567", "text": "  "}',
    b'{"to": "call me", "text": "hi"}',
    b'["+84901234567", "hi"]',
])
def test_sms_gateway_rejects_bad_requests(gateway, body):
    answer = requests.post(gateway.url, data=body, headers={"Content-Type": "application/json"}, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"]
    assert gateway.messages() == []


def test_two_sms_gateways_play_primary_and_fallback(tmp_path):
    with SmsGateway(directory=tmp_path / "primary", path_prefix="/primary") as primary, \
            SmsGateway(directory=tmp_path / "fallback", path_prefix="/fallback") as fallback:
        primary.fail()
        sms = {"to": PHONE, "text": "Nhắc lịch học"}
        assert requests.post(primary.url, json=sms, timeout=5).status_code == 503
        assert requests.post(fallback.url, json=sms, timeout=5).status_code == 200
        assert fallback.url.endswith("/fallback/sms")
        assert (primary.messages(), len(fallback.messages())) == ([], 1)


def test_sms_gateway_takes_a_burst_of_concurrent_senders(gateway):
    def post(number):
        sms = {"to": "+849012345{:02d}".format(number), "text": "Nhắc lịch học"}
        return requests.post(gateway.url, json=sms, timeout=5).status_code

    assert set(eventlet.GreenPool(50).imap(post, range(50))) == {200}
    assert len(gateway.messages()) == 50


@pytest.mark.parametrize("text, count", [
    ("a" * 160, 1), ("a" * 161, 2), ("{" * 80, 1), ("{" * 81, 2),
    ("Lịch học" * 8 + "ABCDEF", 1), ("Lịch học" * 8 + "ABCDEFG", 2), ("ạ" * 135, 3),
])
def test_sms_segments_follow_gsm7_and_ucs2_sizes(text, count):
    assert segments(text) == count



def test_make_runs_supervisor_restarts_a_killed_database_on_its_data_and_a_crashed_sink_with_backoff(
        tmp_path, capsys):
    """devstack.run's Supervisor on the real embedded servers: SecantusDB killed with SIGKILL comes back
    on its port with what was committed; the SMTP sink, killed while its port is taken, fails to start
    after 1 s and is tried again 2 s later; every step is said."""
    import os
    import signal
    import socket
    import time
    from devstack import run
    said = []

    def until(condition):
        deadline = time.monotonic() + 60
        while not condition():
            supervisor.tick()
            said.append(capsys.readouterr().out)
            assert time.monotonic() < deadline, "".join(said)
            eventlet.sleep(0.1)

    with EmbeddedMongo(storage_path=tmp_path / "db") as server, SmtpSink(directory=tmp_path / "mail") as sink:
        client = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=20000)
        client.devstack.learners.insert_one({"_id": 1, "name": "Nguyễn Văn Ánh"})
        supervisor = run.Supervisor()
        supervisor.watch("embedded SecantusDB", server.exit_status, lambda: server.restart().pid)
        supervisor.watch("embedded SMTP sink", sink.exit_status, lambda: sink.restart().pid)
        killed_pid = server.pid
        server.kill()
        os.kill(sink.pid, signal.SIGKILL)
        until(lambda: sink.exit_status() is not None)
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", sink.port))
        squatter.listen()
        try:
            until(lambda: server.alive() and "could not start again" in "".join(said))
        finally:
            squatter.close()
        until(sink.alive)
        log = "".join(said)
        restarted_pid = server.pid
        assert restarted_pid != killed_pid
        assert client.devstack.learners.find_one({"_id": 1})["name"] == "Nguyễn Văn Ánh"
        send(sink, confirmation())
        assert len(sink.messages()) == 1
        client.close()
    assert "» supervisor: embedded SecantusDB killed by SIGKILL after" in log
    assert "restarting it in 1 s" in log and "embedded SecantusDB restarted (pid {})".format(restarted_pid) in log
    assert "» supervisor: embedded SMTP sink killed by SIGKILL after" in log
    assert "embedded SMTP sink could not start again (port {} is already in use); next try in 2 s".format(
        sink.port) in log
    assert "embedded SMTP sink restarted (pid" in log


def test_the_supervisors_backoff_doubles_up_to_its_cap_and_starts_over_after_a_steady_run(capsys):
    """The rule alone, on a clock of its own: a thing that crashes at once each time waits 1, 2, 4, 8, 16,
    30, 30 s; once it has stayed up a minute, its next crash waits 1 s again."""
    from devstack import run
    now = [0.0]
    state = {"status": None, "starts": []}
    supervisor = run.Supervisor(clock=lambda: now[0])

    def restart():
        state["starts"].append(now[0])
        state["status"] = None
        return 100 + len(state["starts"])
    supervisor.watch("service flaky", lambda: state["status"], restart)

    waits = []
    for _ in range(7):
        state["status"] = 1  # crashes as soon as it is up
        crashed = now[0]
        supervisor.tick()
        while len(state["starts"]) == len(waits):
            now[0] += 0.5
            supervisor.tick()
        waits.append(state["starts"][-1] - crashed)
    assert waits == [1, 2, 4, 8, 16, 30, 30]
    now[0] += run.RESTART_STEADY
    state["status"] = -9
    crashed = now[0]
    supervisor.tick()
    while now[0] - crashed < 1:
        assert len(state["starts"]) == 7
        now[0] += 0.5
        supervisor.tick()
    assert len(state["starts"]) == 8
    said = capsys.readouterr().out
    assert "» supervisor: service flaky exit status 1 after 0 s up; restarting it in 30 s" in said
    assert "» supervisor: service flaky killed by SIGKILL after 60 s up; restarting it in 1 s" in said
    assert "restart 1 in a row" in said and "» supervisor: service flaky restarted (pid 108)" in said

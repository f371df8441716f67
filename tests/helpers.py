"""Small things the scenario tests share."""
import time

import eventlet
import requests


def wait_for(predicate, timeout=30, interval=0.05):
    """Poll until `predicate()` is truthy; return its value or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        eventlet.sleep(interval)
    raise AssertionError("condition not met within {}s".format(timeout))


class Client:
    """The public HTTP API as a caller sees it."""

    def __init__(self, base_url, token=None):
        self.base_url = base_url
        self.http = requests.Session()
        self.token = token

    def as_(self, token):
        return Client(self.base_url, token)

    def request(self, method, path, json=None, data=None, headers=None):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        return self.http.request(method, self.base_url + path, json=json, data=data, headers=headers,
                                 timeout=30)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.request("POST", path, json=json, **kw)

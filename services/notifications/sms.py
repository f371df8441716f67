"""The SMS providers: the primary gateway, and the fallback while it is down. What an SMS costs is in
rules.py (GSM 03.38).
"""
import json

import requests


class SmsRefused(Exception):
    """The provider refused this message for good (an invalid number, a malformed text)."""


class SmsUnavailable(Exception):
    """No provider took the message this time (down, overloaded, unreachable): try again later."""


class SmsProviders:
    """`send(to, text) -> (provider, provider message id)`: POST {to, text, sender} as JSON to the
    primary gateway, and to the fallback when the primary is down (5xx, 429, unreachable). A 4xx
    from a provider means the message itself is wrong: no other provider would take it either."""

    def __init__(self, gateway_url, fallback_url="", sender="", timeout=10):
        self.urls = [("primary", gateway_url)] + ([("fallback", fallback_url)] if fallback_url else [])
        self.sender = sender
        self.timeout = timeout
        self.http = requests.Session()

    def send(self, to, text):
        problems = []
        for provider, url in self.urls:
            try:
                response = self.http.post(url, json={"to": to, "text": text, "sender": self.sender},
                                          timeout=self.timeout)
            except requests.RequestException as exc:
                problems.append("{}: {}".format(provider, type(exc).__name__))
                continue
            if response.status_code >= 500 or response.status_code == 429:
                problems.append("{}: HTTP {}".format(provider, response.status_code))
                continue
            if response.status_code >= 400:
                raise SmsRefused("{}: HTTP {} {}".format(provider, response.status_code, _error_of(response)))
            return provider, _json(response).get("id")
        raise SmsUnavailable("; ".join(problems))

    def close(self):
        self.http.close()


def _json(response):
    try:
        return response.json()
    except ValueError:
        return {}


def _error_of(response):
    body = _json(response)
    return body.get("error", "") if isinstance(body, dict) else json.dumps(body)[:200]

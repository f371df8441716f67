"""What an SMS costs before it is sent, and the provider adapter that sends it.

Cost: GSM 03.38 (3GPP TS 23.038). A text made only of the basic alphabet (and its extension table,
whose characters take two septets each: an escape, then the character) travels 7-bit, 160 septets in
one segment, 153 per segment once split (the rest is the concatenation header). Any other character
(Vietnamese diacritics such as ả, ộ, ư, đ) forces the whole text to UCS-2: 70 characters in one
segment, 67 per segment once split. Characters outside the BMP take two UCS-2 units.
"""
import json
import unicodedata

import requests

# The basic character set, in table order (0x00..0x7F; 0x1B is the escape, not a character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
) - {"\x1b"}
# The extension table: each costs two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def is_gsm7(text):
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def cost(text):
    """{"encoding": "GSM-7"|"UCS-2", "units": septets or UCS-2 code units, "segments": n}."""
    if is_gsm7(text):
        units = len(text) + sum(char in GSM7_EXTENSION for char in text)
        single, part, encoding = GSM7_SINGLE, GSM7_PART, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part, encoding = UCS2_SINGLE, UCS2_PART, "UCS-2"
    segments = 1 if units <= single else -(-units // part)
    return {"encoding": encoding, "units": units, "segments": segments}


def segments(text):
    return cost(text)["segments"]


# Typography that has no GSM-7 form but an obvious plain one.
_PLAIN = str.maketrans({"đ": "d", "Đ": "D", "–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"',
                        "…": "...", "\u00a0": " "})


def transliterate(text):
    """Unaccented Vietnamese (`Xác nhận đăng ký` → `Xac nhan dang ky`): diacritics removed, đ → d."""
    decomposed = unicodedata.normalize("NFD", text.translate(_PLAIN))
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def prepare(text, mode="long"):
    """The text to send under `SMS.transliterate`: `never`, `always`, or `long` (only when the text as
    written would take more than one segment). Returns (text, cost)."""
    if mode == "always" or (mode == "long" and cost(text)["segments"] > 1):
        text = transliterate(text)
    return text, cost(text)


# -- the provider adapter --------------------------------------------------------------------------

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

"""Calendar feeds' keys: what signs the read-only tokens of the partners', venues' and sessions' ICS
feeds (FEED_SECRET, without which scheduling refuses to start) and the public address their URLs
start with (PUBLIC_URL). The tokens themselves are rules (rules.feed_token); each feed's generation
is in the store (store.feed_generation), so rotating a feed ends its old URL at once."""
from nameko.extensions import DependencyProvider

from backbone.config import public_url, required_secret
from services.scheduling import rules


class FeedKeys:
    """A worker's view: the current token and URL of a feed, and whether a token opens it."""

    def __init__(self, secret, base_url):
        self._secret = secret
        self._base_url = base_url

    def url(self, kind, target_id, generation):
        token = rules.feed_token(self._secret, kind, target_id, generation)
        return rules.feed_url(self._base_url, kind, target_id, token)

    def opens(self, kind, target_id, generation, token):
        return rules.feed_token_opens(self._secret, kind, target_id, generation, token)


class Feeds(DependencyProvider):
    def setup(self):
        from nameko import config
        self.secret = required_secret(config.get("FEED_SECRET"), "FEED_SECRET")

    def get_dependency(self, worker_ctx):
        from nameko import config
        return FeedKeys(self.secret, public_url(config))

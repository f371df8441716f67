"""`@rpc`: nameko's RPC entrypoint, answering without waiting for the broker's confirm of the reply.

nameko publishes every reply with a publisher confirm and waits for it: a broker round trip on each
call's way back (the registration burst is a chain of such waits). The confirm changes nothing here:
a reply is a transient message to the caller's own reply queue, and one that is lost after it left
is the same as one never sent, confirmed or not: the caller's RPC times out (the gateway then
answers 503). A reply that cannot be written at all still raises, as before. Requests keep their
confirm: the gateway's client needs it to tell a service that does not exist.

It also takes as many calls at once as the service has workers (`WORKERS`, backbone/container.py),
as the event subscriber does. nameko takes PREFETCH_COUNT (10) whatever the workers: a service given
20 workers then still had 10 calls in flight, and the registration burst's batches could not overlap.
"""
from nameko import config
from nameko.amqp.publish import Publisher
from nameko.constants import AMQP_SSL_CONFIG_KEY, LOGIN_METHOD_CONFIG_KEY
from nameko.rpc import Responder, Rpc, RpcConsumer, get_rpc_exchange


class _ReplyPublisher(Publisher):
    use_confirms = False


class _Responder(Responder):
    publisher_cls = _ReplyPublisher


class _RpcConsumer(RpcConsumer):
    def setup(self):
        self.consumer_options.setdefault("prefetch_count", self.container.max_workers)
        super().setup()

    def handle_result(self, message, result, exc_info):
        # nameko's own, with the responder above.
        responder = _Responder(self.amqp_uri, get_rpc_exchange(), message, ssl=config.get(AMQP_SSL_CONFIG_KEY),
                               login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        result, exc_info = responder.send_response(result, exc_info)
        self.consumer.ack_message(message)
        return result, exc_info


class _Rpc(Rpc):
    rpc_consumer = _RpcConsumer()


rpc = _Rpc.decorator

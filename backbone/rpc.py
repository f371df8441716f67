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

On a cluster (QUEUE_TYPE=quorum) the request queue `rpc-<service>` is a quorum queue, replicated on
every node, and a caller's reply queue is transient (`reply_listener` below): a durable classic queue
lives on one node, and after that node is lost its name cannot be declared again anywhere, so a caller
whose reply queue lived there would never hear a reply again. A transient one goes with its node and
is declared anew on the node the caller reconnects to; replies in flight at that moment are lost and
the call times out (the gateway answers 503).
"""
from nameko import config

from backbone import topology
from nameko.amqp.publish import Publisher
from nameko.constants import AMQP_SSL_CONFIG_KEY, LOGIN_METHOD_CONFIG_KEY
from nameko.exceptions import ReplyQueueExpiredWithPendingReplies
from nameko.rpc import ReplyListener, Responder, Rpc, RpcConsumer, get_rpc_exchange


class _ReplyPublisher(Publisher):
    use_confirms = False


class _Responder(Responder):
    publisher_cls = _ReplyPublisher


class _RpcConsumer(RpcConsumer):
    def setup(self):
        self.consumer_options.setdefault("prefetch_count", self.container.max_workers)
        super().setup()
        # The same Queue object the consumer declares: a quorum queue on a cluster (topology).
        self.queue.queue_arguments = dict(self.queue.queue_arguments or {}, **topology.rpc_queue_arguments())

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


class TransientReplyListener(ReplyListener):
    """A caller's reply queue that follows it to whichever node it reconnects to: transient, so the
    cluster removes it with a lost node and the reconnection declares it anew (x-expires as
    nameko's). Calls waiting when their queue went are answered at once with
    ReplyQueueExpiredWithPendingReplies (the gateway's 503) instead of waiting for replies that
    can no longer come; nameko raises it inside the reconnection, which then never completes."""

    def setup(self):
        super().setup()
        self.queue.durable = False

    def check_for_lost_replies(self):
        try:
            super().check_for_lost_replies()
        except ReplyQueueExpiredWithPendingReplies as lost:
            for correlation_id in list(self.pending):
                self.pending.pop(correlation_id).send_exception(lost)

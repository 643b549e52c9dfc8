"""Delivery, the same for every upstream: the sender's loop over the outbox, the `Wire` protocol
each upstream implements, the `Verdict` every answer becomes, backoff, the rate limit, packing."""

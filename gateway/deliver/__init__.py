"""Delivery: the durable outbox, the store's thread that writes it, the group
commit into it, the publisher that drains it to the broker, the MQTT link,
and the payloads of the MQTT contract."""

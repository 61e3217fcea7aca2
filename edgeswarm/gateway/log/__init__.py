"""The gateway's durable observation log: store, records, segments, metrics."""

"""The client side of one session with a gateway: edge uplink, admin tool, peer gateway."""

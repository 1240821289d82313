"""Real time: the bus that wakes gateways, the hub that fans events out, the WebSocket gateway."""

"""One thin module per DVC stage: read params, call library code, write outputs atomically."""

"""The seed's JSON-line output: an OTel log record exporter, its wiring, the marshaller, publishers."""

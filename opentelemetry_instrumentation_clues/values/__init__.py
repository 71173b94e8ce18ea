"""Job values as attribute text: the JSON converter (bounded by length and depth) and redaction."""

_instruments = ("rq >= 2.6, < 4",)

_supports_metrics = True

"""Exporters: send stored records on to other systems, from the outbox (store/outbox.py).

`base.py` holds what every exporter answers for a batch; `runner.py` claims batches and applies
the retry policy; each exporter type (`webhook.py`) only sends one batch and classifies the answer.
"""

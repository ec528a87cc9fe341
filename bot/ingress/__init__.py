"""Webhook ingress: size check, verify, store, answer, and nothing else.

`verify` turns headers and raw bytes into a delivery with no I/O, `writer` commits
deliveries in groups, `routes` holds the HTTP endpoints. Nothing here imports the UI
(bot.web) or the sessions: ingress must keep answering whatever the rest is doing.
"""

"""Response metrics and reports: incident response (MTTA, MTTR, pages) and
the DORA four for deployments, computed from what the bot recorded.

stats.py and dora.py are pure arithmetic over plain rows (testable to the
second); history.py reads those rows from the database; render.py turns a
report into a message; exporter.py publishes the figures as Prometheus gauges.
"""

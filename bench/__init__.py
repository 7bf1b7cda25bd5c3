"""``make bench``: this project's fleet operators and DAG against the Amazon provider's stock
operators and a timing model of the old scripts, on the fleet simulator (see ``bench/RESULTS.md``).

Modules, by what they hold:

- :mod:`bench.cli`: the command line (``python -m bench --sizes 3,30,300 --out bench/RESULTS.md``)
- :mod:`bench.fleets`: generated fleet configs of N worker roles, and the commands the hosts run
- :mod:`bench.stock_dag`: the same daily flow built only from the provider's stock operators
- :mod:`bench.old_scripts_model`: the Lambda + ``apagarServer*.sh`` timing model
- :mod:`bench.flows`: the operator-level flows (the tasks of fleet_daily and of the stock DAG), run in a
  process of their own like a worker and a triggerer would
- :mod:`bench.airflow_runs`: full DAG runs through real Airflow (``airflow_harness``)
- :mod:`bench.measure`: one size end to end: simulator, flows, metrics from its logs
- :mod:`bench.metrics`: the metrics, computed from the simulator's timeline and API call log
- :mod:`bench.results`: what a run found (dataclasses the measurements fill and the report reads)
- :mod:`bench.parse_time`: DAG file parse times
- :mod:`bench.procs`: peak memory of processes, from ``/proc``
- :mod:`bench.stats`: medians, ratios, number formatting
- :mod:`bench.report`, :mod:`bench.size_report`: ``RESULTS.md`` (tables as data; ``method.md``)
"""

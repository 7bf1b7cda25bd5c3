"""``make bench``: this project's fleet operators and DAG against the Amazon provider's stock operators
and a timing model of the old scripts, on the fleet simulator. :mod:`bench.cli` is the command line,
``bench/method.md`` the method, ``bench/RESULTS.md`` the results; each module says what it holds.
"""
